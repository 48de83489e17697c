"""The eval's task file and its scoring: pure code, tested without a model."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox

from evals.report import render_markdown, summary_from_stored, tuning_baseline
from evals.run import parser, task_files
from evals.scoring import RunRecord, Step, check_rule, score_task, summarize, summarize_splits
from evals.tasks import (
    BUNDLED_TOOLS,
    DEFAULT_FRESH_TASKS_FILE,
    DEFAULT_TASK_FILES,
    TaskError,
    check_suite,
    load_task_files,
    load_tasks,
    parse_tasks,
    select_tasks,
)

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
    with pytest.raises(TaskError, match="1 tuning tasks, fewer than 40"):
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


# -- the held-out split -------------------------------------------------------------------------


def test_tasks_are_tuning_unless_held_out() -> None:
    assert one().split == "tuning"
    assert one(split="heldout").split == "heldout"
    with pytest.raises(TaskError, match=r"tasks\.toml: task 't': unknown split 'test'"):
        parse_tasks({"task": [task(split="test")]}, "tasks.toml")


def test_every_task_in_the_file_names_its_split() -> None:
    text = (Path(__file__).resolve().parents[2] / "evals" / "tasks.toml").read_text()
    assert text.count("\n[[task]]\n") == text.count('\nsplit = "') == len(load_tasks())


def test_held_out_tasks_cover_every_tool_kind_and_a_fresh_file() -> None:
    heldout = [t for t in load_tasks() if t.split == "heldout"]
    assert len(heldout) >= 20
    singles = {t.tools[0] for t in heldout if t.kind == "single"}
    assert singles == set(BUNDLED_TOOLS)
    assert {t.kind for t in heldout} == {"single", "two_step", "no_tool"}
    for name in (
        "recipes/pancakes.txt",
        "docs/phone-list.txt",
        "docs/release-history.md",
        "scripts/tidy_tmp.py",
    ):
        assert (EVAL_WORKSPACE / name).is_file(), name


def without(tasks: list[Any], **where: Any) -> list[Any]:
    return [t for t in tasks if not all(getattr(t, key) == value for key, value in where.items())]


def test_check_suite_keeps_the_held_out_coverage() -> None:
    tasks = load_tasks()
    thin_heldout = [t for t in tasks if not (t.split == "heldout" and t.tools[:1] == ("echo",))]
    with pytest.raises(TaskError, match="echo has 0 heldout single-tool tasks, fewer than 2"):
        check_suite(thin_heldout)
    with pytest.raises(TaskError, match="heldout no_tool tasks, fewer than 4"):
        check_suite(without(tasks, split="heldout", kind="no_tool"))
    with pytest.raises(TaskError, match="0 heldout two_step tasks, fewer than 3"):
        check_suite(without(tasks, split="heldout", kind="two_step"))


def test_held_out_tasks_do_not_count_for_the_tuning_coverage() -> None:
    tasks = load_tasks()
    # Every tuning task now held out: the held-out split is plenty, the tuning split is empty.
    moved = [dataclasses.replace(t, split="heldout") for t in tasks]
    with pytest.raises(TaskError) as raised:
        check_suite(moved)
    assert "0 tuning tasks, fewer than 40" in str(raised.value)
    assert "echo has 0 tuning single-tool tasks, fewer than 3" in str(raised.value)
    assert "heldout" not in str(raised.value).replace("tuning", "")


def test_tasks_are_selected_by_split() -> None:
    tasks = load_tasks()
    heldout = select_tasks(tasks, splits=["heldout"])
    assert heldout and {t.split for t in heldout} == {"heldout"}
    assert len(heldout) + len(select_tasks(tasks, splits=["tuning"])) == len(tasks)
    assert select_tasks(tasks, splits=["tuning", "heldout"]) == tasks
    with pytest.raises(TaskError, match="unknown split 'test'"):
        select_tasks(tasks, splits=["test"])


def test_the_summary_is_also_given_per_split_and_side_by_side() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    held = dataclasses.replace(two, id="held", split="heldout")
    tasks = [two, two, held]
    records = [record(READ, ECHO), record(), record(READ, ECHO)]
    scores = [score_task(t, r) for t, r in zip(tasks, records, strict=True)]
    splits = summarize_splits(tasks, records, scores)
    assert list(splits) == ["tuning", "heldout"]
    assert (splits["tuning"].success.passed, splits["tuning"].success.total) == (1, 2)
    assert (splits["heldout"].success.passed, splits["heldout"].success.total) == (1, 1)
    assert (splits["tuning"].tool_choice["all"].passed, splits["heldout"].arguments.total) == (1, 1)
    markdown = render_markdown({}, tasks, records, scores, summarize(tasks, records, scores))
    table = markdown[markdown.index("## Held-out vs tuning") : markdown.index("## Tasks")]
    assert "| measure | tuning | held-out | all |" in table
    assert "| success | 1/2 (50%) | 1/1 (100%) | 2/3 (67%) |" in table
    assert "| tool choice right | 1/2 (50%) | 1/1 (100%) | 2/3 (67%) |" in table
    assert "| arguments right | 1/1 (100%) | 1/1 (100%) | 2/2 (100%) |" in table
    assert "| held | heldout | two_step | yes |" in markdown


# -- the baseline: a run from before the split ----------------------------------------------------


BASELINE_FILE = Path(__file__).resolve().parents[2] / "evals" / "baseline.json"


def test_a_baseline_from_before_the_split_is_the_tuning_split() -> None:
    baseline = json.loads(BASELINE_FILE.read_text())
    assert "splits" not in baseline
    before = tuning_baseline(baseline, load_tasks())
    assert before == {"meta": baseline["meta"], "summary": baseline["summary"]}


def test_a_baselines_summary_is_made_again_from_its_stored_scores() -> None:
    """So a baseline whose tasks are partly held out now gives the figures that run got for the rest."""
    baseline = json.loads(BASELINE_FILE.read_text())
    rebuilt = summary_from_stored(baseline["tasks"])
    compared = ["success", "perKind", "perTool", "toolChoice", "arguments", "maxSteps", "maxTokens"]
    compared += ["repeatedCalls", "medianSeconds", "medianPromptTokens", "medianCompletionTokens"]
    assert {key: rebuilt[key] for key in compared} == {key: baseline["summary"][key] for key in compared}


def test_tasks_held_out_now_leave_the_baselines_tuning_figures() -> None:
    baseline = json.loads(BASELINE_FILE.read_text())
    tasks = load_tasks()
    passed = next(e for e in baseline["tasks"] if e["score"]["success"])
    held = [dataclasses.replace(t, split="heldout") if t.id == passed["id"] else t for t in tasks]
    before = tuning_baseline(baseline, held)["summary"]
    assert before["success"]["total"] == baseline["summary"]["success"]["total"] - 1
    assert before["success"]["passed"] == baseline["summary"]["success"]["passed"] - 1
    assert before["perKind"]["single"]["total"] == baseline["summary"]["perKind"]["single"]["total"] - (
        passed["kind"] == "single"
    )


def test_a_baseline_with_splits_gives_its_tuning_split() -> None:
    tuning = {"success": {"passed": 3, "total": 4, "percent": 75.0}}
    before = tuning_baseline({"meta": {"date": "d"}, "splits": {"tuning": tuning}, "tasks": []}, [])
    assert before == {"meta": {"date": "d"}, "summary": tuning, "heldout": None}


def test_a_baseline_with_a_held_out_split_gets_its_own_before_and_after_table() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    held = dataclasses.replace(two, id="held", split="heldout")
    tasks, records = [two, held], [record(READ, ECHO), record()]
    scores = [score_task(t, r) for t, r in zip(tasks, records, strict=True)]
    summary = summarize(tasks, records, scores)
    rate = {"passed": 1, "total": 4, "percent": 25.0}
    held_out = {"success": rate, "toolChoice": {"all": rate}, "arguments": rate, "answers": rate}
    tuning = json.loads(BASELINE_FILE.read_text())["summary"]
    stored = {"meta": {"date": "d"}, "splits": {"tuning": tuning, "heldout": held_out}, "tasks": []}
    markdown = render_markdown({}, tasks, records, scores, summary, tuning_baseline(stored, tasks))
    table = markdown[markdown.index("## Held-out tasks, before and after") : markdown.index("## Tasks")]
    assert "| success | 1/4 (25%) | 0/1 (0%) |" in table


def test_the_before_and_after_table_sets_the_baseline_beside_the_tuning_split() -> None:
    baseline = json.loads(BASELINE_FILE.read_text())
    two = parse_tasks({"task": [TWO_STEP]})[0]
    held = dataclasses.replace(two, id="held", split="heldout")
    tasks, records = [two, held], [record(READ, ECHO), record()]
    scores = [score_task(t, r) for t, r in zip(tasks, records, strict=True)]
    summary = summarize(tasks, records, scores)
    markdown = render_markdown({}, tasks, records, scores, summary, tuning_baseline(baseline, load_tasks()))
    table = markdown[markdown.index("## Before and after") : markdown.index("## Tasks")]
    before = baseline["summary"]["success"]
    assert f"| success, overall | {before['passed']}/{before['total']} (16%) | 1/1 (100%) |" in table
    only_heldout = render_markdown({}, tasks[1:], records[1:], scores[1:], summary, baseline)
    assert "## Before and after" not in only_heldout


def test_records_keep_the_cached_prompt_tokens() -> None:
    kept = RunRecord("t", prompt_tokens=100, cached_prompt_tokens=60)
    assert RunRecord.from_json(kept.to_json()) == kept
    assert RunRecord.from_json({"id": "old", "usage": {"promptTokens": 5}}).cached_prompt_tokens == 0


# -- forbidden tools ------------------------------------------------------------------------------


def test_forbidden_tools_are_checked_when_loading() -> None:
    assert one(forbid_tools=["list_dir"]).forbid_tools == ("list_dir",)
    with pytest.raises(TaskError, match="task 't': unknown tool 'ls' in 'forbid_tools'"):
        parse_tasks({"task": [task(forbid_tools=["ls"])]}, "tasks.toml")
    with pytest.raises(TaskError, match="'echo' is both expected in 'tools' and in 'forbid_tools'"):
        parse_tasks({"task": [task(forbid_tools=["echo"])]})


def test_calling_a_forbidden_tool_fails_the_task_even_after_the_expected_calls() -> None:
    echo = one(forbid_tools=["list_dir"])
    right = Step("echo", {"value": "x"}, False)
    clean = score_task(echo, RunRecord("t", (right,), "x", "answer"))
    assert (clean.success, clean.forbidden_calls) == (True, 0)
    after = score_task(echo, RunRecord("t", (right, Step("list_dir", {"path": "."}, False)), "x", "answer"))
    assert (after.sequence, after.success, after.forbidden_calls) == (True, False, 1)
    assert "called list_dir, which this request must not call" in after.reasons


# -- the fresh held-out set (evals/tasks-fresh.toml) ----------------------------------------------
# Checked without quoting its tasks: whoever tunes the agent must be able to run these tests
# without reading the fresh set.


def test_the_fresh_set_loads_with_the_suite_and_keeps_its_coverage() -> None:
    everything = load_task_files()
    check_suite(everything)
    fresh = load_tasks(DEFAULT_FRESH_TASKS_FILE)
    assert {t.split for t in fresh} == {"fresh"}
    assert "fresh" not in {t.split for t in load_tasks()}
    assert [t.id for t in everything] == [t.id for t in load_tasks()] + [t.id for t in fresh]
    assert len(fresh) >= 25
    assert {t.tools[0] for t in fresh if t.kind == "single"} == set(BUNDLED_TOOLS)
    kinds = [t.kind for t in fresh]
    assert (kinds.count("two_step") >= 3, kinds.count("no_tool") >= 4) == (True, True)


def test_every_task_in_the_fresh_file_names_its_split() -> None:
    text = DEFAULT_FRESH_TASKS_FILE.read_text()
    assert (
        text.count("\n[[task]]\n")
        == text.count('\nsplit = "fresh"\n')
        == len(load_tasks(DEFAULT_FRESH_TASKS_FILE))
    )


def test_the_files_and_folders_tasks_read_are_in_the_fixture_workspace() -> None:
    """Every path rule of a read_file or list_dir call (of either file) names something there."""
    files = [p.relative_to(EVAL_WORKSPACE).as_posix() for p in EVAL_WORKSPACE.rglob("*") if p.is_file()]
    folders = [p.relative_to(EVAL_WORKSPACE).as_posix() for p in EVAL_WORKSPACE.rglob("*") if p.is_dir()]
    checked = 0
    for t in load_task_files():
        for rule in t.rules:
            tool = t.tools[rule.call]
            if rule.field != "path" or rule.check != "regex" or tool not in ("read_file", "list_dir"):
                continue
            candidates = files if tool == "read_file" else folders
            assert any(re.search(rule.expected, name) for name in candidates), t.id
            checked += 1
    assert checked >= 20


def test_a_task_id_is_used_once_across_task_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    entry = '[[task]]\nid = "t"\nkind = "no_tool"\nprompt = "hi"\ntools = []\n'
    first.write_text(entry)
    second.write_text(entry.replace("tools", 'split = "fresh"\ntools'))
    assert [t.split for t in load_task_files([first])] == ["tuning"]
    with pytest.raises(TaskError, match=r"b\.toml: task id 't' is also used in .*a\.toml"):
        load_task_files([first, second])


def test_check_suite_keeps_the_fresh_coverage_when_the_fresh_set_is_loaded() -> None:
    everything = load_task_files()
    thin = [t for t in everything if not (t.split == "fresh" and t.tools[:1] == ("echo",))]
    with pytest.raises(TaskError, match="echo has 0 fresh single-tool tasks, fewer than 2"):
        check_suite(thin)
    with pytest.raises(TaskError, match="fresh no_tool tasks, fewer than 4"):
        check_suite(without(everything, split="fresh", kind="no_tool"))
    check_suite(load_tasks())  # without the fresh set: nothing to keep


def test_the_runner_loads_both_task_files_unless_told_otherwise() -> None:
    assert task_files(parser().parse_args([])) == list(DEFAULT_TASK_FILES)
    chosen = parser().parse_args(["--tasks", "a.toml", "--tasks", "b.toml", "--split", "fresh"])
    assert (task_files(chosen), chosen.split) == ([Path("a.toml"), Path("b.toml")], ["fresh"])
    selected = select_tasks(load_task_files(), splits=["fresh"])
    assert selected == load_tasks(DEFAULT_FRESH_TASKS_FILE)


def test_the_split_table_gains_a_fresh_column() -> None:
    two = parse_tasks({"task": [TWO_STEP]})[0]
    held, fresh = (dataclasses.replace(two, id=name, split=name) for name in ("heldout", "fresh"))
    tasks = [two, held, fresh]
    records = [record(READ, ECHO), record(READ, ECHO), record()]
    scores = [score_task(t, r) for t, r in zip(tasks, records, strict=True)]
    assert list(summarize_splits(tasks, records, scores)) == ["tuning", "heldout", "fresh"]
    markdown = render_markdown({}, tasks, records, scores, summarize(tasks, records, scores))
    table = markdown[markdown.index("## Held-out vs tuning") : markdown.index("## Tasks")]
    assert "| measure | tuning | held-out | fresh | all |" in table
    assert "| success | 1/1 (100%) | 1/1 (100%) | 0/1 (0%) | 2/3 (67%) |" in table
