"""The eval's task file and its scoring: pure code, tested without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox

from evals.scoring import RunRecord, Step, check_rule, score_task, summarize
from evals.tasks import BUNDLED_TOOLS, TaskError, check_suite, load_tasks, parse_tasks, select_tasks

EVAL_WORKSPACE = Path(__file__).resolve().parents[2] / "evals" / "workspace"


def task(**fields: Any) -> dict[str, Any]:
    return {"id": "t", "kind": "single", "prompt": "p", "tools": ["echo"], **fields} | (
        {} if "args" in fields else {"args": [{"field": "value", "contains": "x"}]}
    )


def one(**fields: Any) -> Any:
    return parse_tasks({"task": [task(**fields)]})[0]


def test_the_suite_loads_and_keeps_its_coverage() -> None:
    tasks = load_tasks()
    check_suite(tasks)
    assert len(tasks) >= 40
    assert {tool for t in tasks for tool in t.tools} == set(BUNDLED_TOOLS)


def test_the_suites_idea_of_each_tool_matches_the_built_tools(bundled_tools: Path, cache_dir: Path) -> None:
    toolbox = Toolbox(WasmHost(cache_dir), [bundled_tools])
    try:
        tools = toolbox.load_all().tools
        for name, params in BUNDLED_TOOLS.items():
            schema = tools[name].input_schema["properties"]
            assert {key: value["type"] for key, value in schema.items()} == params, name
    finally:
        toolbox.close()


def test_files_the_tasks_name_are_in_the_fixture_workspace() -> None:
    for name in ("notes.txt", "config/settings.ini", "TODO.md"):
        assert (EVAL_WORKSPACE / name).is_file(), name
    assert "8080" in (EVAL_WORKSPACE / "config" / "settings.ini").read_text()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"tools": ["http_get"]}, "unknown tool 'http_get'"),
        ({"kind": "sometimes"}, "unknown kind 'sometimes'"),
        ({"kind": "two_step"}, "expects 2 tool(s)"),
        ({"args": [{"field": "value", "looks_like": "x"}]}, "unknown rule name 'looks_like'"),
        ({"args": [{"field": "value", "contains": "x", "equals": "x"}]}, "needs exactly one of"),
        ({"args": [{"field": "colour", "equals": "x"}]}, "echo has no parameter 'colour'"),
        ({"args": [{"field": "value", "regex": "("}]}, "invalid regex"),
        ({"args": []}, "has no argument rule"),
        ({"prompt": " "}, "'prompt' must be a non-empty string"),
        ({"answer_contains": "x"}, "must be a list of non-empty strings"),
        ({"colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_tasks_are_refused_naming_the_task(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TaskError) as raised:
        parse_tasks({"task": [task(**fields)]}, "tasks.toml")
    assert "tasks.toml: task 't'" in str(raised.value)
    assert fragment in str(raised.value)


def test_a_thin_suite_is_refused() -> None:
    with pytest.raises(TaskError, match="fewer than 40"):
        check_suite([one()])


def test_tasks_are_selected_by_id_and_kind() -> None:
    tasks = load_tasks()
    assert [t.id for t in select_tasks(tasks, only=[tasks[3].id])] == [tasks[3].id]
    assert {t.kind for t in select_tasks(tasks, kinds=["no_tool"])} == {"no_tool"}
    with pytest.raises(TaskError, match="no task with id 'nope'"):
        select_tasks(tasks, only=["nope"])


@pytest.mark.parametrize(
    ("rule", "arguments", "passes"),
    [
        ({"equals": "Hi"}, {"value": "Hi"}, True),
        ({"equals": "Hi"}, {"value": "hi"}, False),
        ({"contains": "MORNING"}, {"value": "good morning"}, True),
        ({"contains": "night"}, {"value": "good morning"}, False),
        ({"regex": r"(^|/)notes\.txt$"}, {"value": "/workspace/notes.txt"}, True),
        ({"regex": r"(^|/)notes\.txt$"}, {"value": "notes.txt.bak"}, False),
        ({"one_of": ["a", "b"]}, {"value": "b"}, True),
        ({"contains": "x"}, {}, False),  # missing
        ({"contains": "x", "default": "xyz"}, {}, True),
    ],
)
def test_string_rules(rule: dict[str, Any], arguments: dict[str, Any], passes: bool) -> None:
    assert check_rule(one(args=[{"field": "value", **rule}]).rules[0], arguments) is passes


@pytest.mark.parametrize(
    ("value", "passes"),
    [(391, True), (391.0, True), ("391", True), (390, False), (True, False), ("many", False)],
)
def test_number_rules_keep_types_apart(value: Any, passes: bool) -> None:
    calc = one(tools=["calc"], args=[{"field": "expression", "number_equals": 391}]).rules[0]
    assert check_rule(calc, {"expression": value}) is passes


TWO_STEP = {
    "id": "two",
    "kind": "two_step",
    "prompt": "read notes.txt, then echo its first word",
    "tools": ["read_file", "echo"],
    "args": [{"field": "path", "regex": "notes"}, {"call": 2, "field": "value", "equals": "Meeting"}],
    "answer_contains": ["meeting"],
}


def record(*steps: Step, answer: str = "Meeting", stop: str = "answer", **extra: Any) -> RunRecord:
    return RunRecord("two", tuple(steps), answer, stop, 100, 10, 1.0, **extra)


READ = Step("read_file", {"path": "notes.txt"}, False, "Meeting at noon")
ECHO = Step("echo", {"value": "Meeting"}, False, "Meeting")


def test_a_run_that_does_everything_right_succeeds() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    score = score_task(two, record(READ, ECHO))
    assert (score.success, score.tool_choice, score.sequence, score.arguments, score.answer) == (
        True,
        True,
        True,
        True,
        True,
    )
    assert (score.unneeded_calls, score.reasons) == (0, ())


def test_each_way_of_failing_is_scored_and_explained() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    wrong_tool = score_task(two, record(Step("print", {"message": "x"}, False)))
    assert (wrong_tool.success, wrong_tool.tool_choice) == (False, False)
    assert "called print, expected read_file → echo" in wrong_tool.reasons
    wrong_argument = score_task(two, record(READ, Step("echo", {"value": "Hello"}, False)))
    assert (wrong_argument.sequence, wrong_argument.arguments, wrong_argument.success) == (True, False, False)
    failed_call = score_task(
        two, record(Step("read_file", {"path": "notes.txt"}, True, "no such file"), ECHO)
    )
    assert failed_call.arguments is False
    repeated = score_task(two, record(READ, ECHO, ECHO))
    assert (repeated.success, repeated.unneeded_calls, repeated.repeated_calls) == (True, 1, 1)
    cut = score_task(two, record(READ, answer='{"tool": "echo", "argu', stop="maxTokens"))
    assert cut.hit_max_tokens
    assert "the last turn was cut off at maxTokens inside a call to echo" in cut.reasons
    crashed = score_task(two, record(error="daemon exited"))
    assert (crashed.success, crashed.answer) == (False, False)


def test_no_tool_tasks_fail_on_any_call() -> None:
    chat = parse_tasks(
        {
            "task": [
                {"id": "hi", "kind": "no_tool", "prompt": "Hello!", "tools": [], "answer_contains": ["hello"]}
            ]
        }
    )[0]
    assert score_task(chat, RunRecord("hi", (), "Hello there", "answer")).success
    called = score_task(chat, RunRecord("hi", (Step("echo", {"value": "Hello"}, False),), "Hello", "answer"))
    assert (called.success, called.tool_choice, called.unneeded_calls) == (False, False, 1)


def test_the_summary_adds_up() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    records = [
        record(READ, ECHO),
        record(Step("print", {"message": "x"}, False), stop="maxSteps", max_steps=1),
    ]
    scores = [score_task(two, r) for r in records]
    summary = summarize([two, two], records, scores)
    assert (summary.success.passed, summary.success.total) == (1, 2)
    assert (summary.per_tool["echo"].passed, summary.per_tool["echo"].total) == (1, 2)
    assert summary.max_steps == ["two"]
    assert summary.calls == 3
    assert summary.median_completion_tokens == 10
