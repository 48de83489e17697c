"""Loading and validating the evaluation tasks (evals/tasks.toml, where the format is documented,
and evals/tasks-fresh.toml, the fresh held-out set in the same format).

Everything wrong with a task file is reported as a TaskError naming the task, before any model
runs: unknown keys, rule names, tools or parameters, a tool sequence that does not fit the
task's kind, a regex that does not compile. The expectation of a task (kind, prompt, tools,
args, answer_contains, forbid_tools) is also what a conversation's turn expects
(evals/conversations.py parses turns with `parse_expectation`).
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

Kind = Literal["single", "two_step", "no_tool"]
# "tuning": looked at while tuning the agent; "heldout": written apart, never tuned on (but read
# in past reports); "fresh": written apart by someone who did not tune, never read while tuning.
Split = Literal["tuning", "heldout", "fresh"]
Check = Literal["equals", "contains", "regex", "one_of", "number_equals"]

# How many tool calls each kind of task expects.
KINDS: dict[str, int] = {"single": 1, "two_step": 2, "no_tool": 0}
SPLITS: tuple[Split, ...] = ("tuning", "heldout", "fresh")
CHECKS: tuple[Check, ...] = ("equals", "contains", "regex", "one_of", "number_equals")
# The bundled tools (components/*) and their parameters' JSON types.
BUNDLED_TOOLS: dict[str, dict[str, str]] = {
    "echo": {"value": "string"},
    "print": {"message": "string"},
    "calc": {"expression": "string"},
    "read_file": {"path": "string", "start_line": "integer", "end_line": "integer"},
    "list_dir": {"path": "string"},
    "search_text": {"pattern": "string", "path": "string", "max_results": "integer"},
    "write_file": {"path": "string", "content": "string", "append": "boolean"},
    "datetime": {"timezone": "string"},
}
# What a task or a turn expects; a task adds its id and split.
EXPECTATION_KEYS = {"kind", "prompt", "tools", "args", "answer_contains", "forbid_tools"}
TASK_KEYS = {"id", "split", *EXPECTATION_KEYS}
RULE_KEYS = {"call", "field", "default", "tolerance", *CHECKS}
DEFAULT_TOLERANCE = 1e-6
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# The coverage the suite must keep (check_suite): the tuning split ...
MIN_TASKS = 40
MIN_SINGLE_PER_TOOL = 3
MIN_TWO_STEP = 6
MIN_NO_TOOL = 6
# ... and the held-out split.
MIN_HELDOUT_SINGLE_PER_TOOL = 2
MIN_HELDOUT_TWO_STEP = 3
MIN_HELDOUT_NO_TOOL = 4
# ... and the fresh split, when it is loaded: as much as the held-out one.
MIN_FRESH_SINGLE_PER_TOOL = 2
MIN_FRESH_TWO_STEP = 3
MIN_FRESH_NO_TOOL = 4

DEFAULT_TASKS_FILE = Path(__file__).with_name("tasks.toml")
# The fresh held-out set: a file of its own, so that whoever tunes can leave it unread.
DEFAULT_FRESH_TASKS_FILE = Path(__file__).with_name("tasks-fresh.toml")
DEFAULT_TASK_FILES = (DEFAULT_TASKS_FILE, DEFAULT_FRESH_TASKS_FILE)


class TaskError(ValueError):
    """A task file that cannot be used; the message names the task."""


@dataclass(frozen=True)
class Rule:
    """One check on one argument of one expected call."""

    call: int  # index into the task's expected tools, from 0
    field: str
    check: Check
    expected: Any
    tolerance: float = DEFAULT_TOLERANCE
    has_default: bool = False
    default: Any = None

    def describe(self) -> str:
        value = f"{self.expected!r}" + (f" ±{self.tolerance:g}" if self.check == "number_equals" else "")
        return f"call {self.call + 1} {self.field} {self.check} {value}"


@dataclass(frozen=True)
class Task:
    id: str
    kind: Kind
    prompt: str
    tools: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    answer_contains: tuple[str, ...] = ()
    split: Split = "tuning"
    forbid_tools: tuple[str, ...] = ()  # tools that must not be called at all


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at `path`; TaskError saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TaskError(f"cannot read {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise TaskError(f"{path} is not valid TOML: {error}") from error


def load_tasks(path: Path = DEFAULT_TASKS_FILE) -> list[Task]:
    return parse_tasks(read_toml(path), str(path))


def load_task_files(paths: Sequence[Path] = DEFAULT_TASK_FILES) -> list[Task]:
    """The tasks of every file, in order; an id may be used once across all of them."""
    tasks: list[Task] = []
    first_file: dict[str, Path] = {}
    for path in paths:
        for task in load_tasks(path):
            if task.id in first_file:
                raise TaskError(f"{path}: task id {task.id!r} is also used in {first_file[task.id]}")
            first_file[task.id] = path
            tasks.append(task)
    return tasks


def parse_tasks(document: Mapping[str, Any], source: str = "tasks") -> list[Task]:
    unknown = sorted(set(document) - {"task"})
    if unknown:
        raise TaskError(f"{source}: unknown top-level key {unknown[0]!r} (tasks are [[task]] tables)")
    entries = document.get("task")
    if not isinstance(entries, list) or not entries:
        raise TaskError(f"{source}: no [[task]] tables")
    tasks = [_parse_task(entry, index, source) for index, entry in enumerate(entries, start=1)]
    duplicates = sorted(name for name, count in Counter(task.id for task in tasks).items() if count > 1)
    if duplicates:
        raise TaskError(f"{source}: task id {duplicates[0]!r} is used more than once")
    return tasks


def _parse_task(entry: Any, index: int, source: str) -> Task:
    if not isinstance(entry, dict):
        raise TaskError(f"{source}: task #{index} is not a table")
    raw_id = entry.get("id")
    name = f"{source}: task {raw_id!r}" if isinstance(raw_id, str) else f"{source}: task #{index}"

    def fail(message: str) -> TaskError:
        return TaskError(f"{name}: {message}")

    check_keys(entry, TASK_KEYS, fail)
    if "id" not in entry:
        raise fail("missing 'id'")
    if not isinstance(raw_id, str) or not ID_PATTERN.match(raw_id):
        raise fail("'id' must be a lower-case string of letters, digits, '-' and '_'")
    return parse_expectation(entry, raw_id, fail, parse_split(entry.get("split", "tuning"), fail))


def check_keys(entry: Mapping[str, Any], known: set[str], fail: Callable[[str], TaskError]) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def parse_split(split: Any, fail: Callable[[str], TaskError]) -> Split:
    if split not in SPLITS:
        raise fail(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return cast(Split, split)


def parse_expectation(
    entry: Mapping[str, Any], task_id: str, fail: Callable[[str], TaskError], split: Split = "tuning"
) -> Task:
    """What a task (or a conversation's turn) expects: its EXPECTATION_KEYS, checked; the caller
    has checked that `entry` holds no other keys."""
    for key in ("kind", "prompt", "tools"):
        if key not in entry:
            raise fail(f"missing {key!r}")
    kind = entry["kind"]
    if kind not in KINDS:
        raise fail(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    prompt = entry["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail("'prompt' must be a non-empty string")
    tools = _tool_names(entry["tools"], "tools", fail)
    if len(tools) != KINDS[kind]:
        raise fail(f"a {kind} task expects {KINDS[kind]} tool(s) in 'tools', not {len(tools)}")
    raw_rules = entry.get("args", [])
    if not isinstance(raw_rules, list):
        raise fail("'args' must be a list of rules")
    rules = tuple(_parse_rule(raw, tools, fail) for raw in raw_rules)
    for call, tool in enumerate(tools):
        if not any(rule.call == call for rule in rules):
            raise fail(f"expected call {call + 1} ({tool}) has no argument rule in 'args'")
    answers = entry.get("answer_contains", [])
    if not isinstance(answers, list) or not all(isinstance(text, str) and text for text in answers):
        raise fail("'answer_contains' must be a list of non-empty strings")
    forbidden = _tool_names(entry.get("forbid_tools", []), "forbid_tools", fail)
    expected_and_forbidden = sorted(set(forbidden) & set(tools))
    if expected_and_forbidden:
        raise fail(f"{expected_and_forbidden[0]!r} is both expected in 'tools' and in 'forbid_tools'")
    return Task(
        task_id, cast(Kind, kind), prompt, tuple(tools), rules, tuple(answers), split, tuple(forbidden)
    )


def _tool_names(tools: Any, key: str, fail: Callable[[str], TaskError]) -> list[str]:
    if not isinstance(tools, list) or not all(isinstance(tool, str) for tool in tools):
        raise fail(f"{key!r} must be a list of tool names")
    for tool in tools:
        if tool not in BUNDLED_TOOLS:
            raise fail(f"unknown tool {tool!r} in {key!r} (known: {', '.join(BUNDLED_TOOLS)})")
    return list(tools)


def _parse_rule(raw: Any, tools: Sequence[str], fail: Callable[[str], TaskError]) -> Rule:
    if not isinstance(raw, dict):
        raise fail(f"argument rule {raw!r} is not a table")
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise fail(f"unknown rule name {unknown[0]!r} in {raw!r} (known: {', '.join(sorted(RULE_KEYS))})")
    checks = [check for check in CHECKS if check in raw]
    if len(checks) != 1:
        raise fail(f"argument rule {raw!r} needs exactly one of {', '.join(CHECKS)}")
    check = checks[0]
    expected = raw[check]
    call = raw.get("call", 1)
    if not isinstance(call, int) or isinstance(call, bool) or not 1 <= call <= len(tools):
        raise fail(f"argument rule {raw!r}: 'call' must be from 1 to {len(tools)} (the expected calls)")
    tool = tools[call - 1]
    field = raw.get("field")
    if not isinstance(field, str):
        raise fail(f"argument rule {raw!r} is missing 'field'")
    params = BUNDLED_TOOLS[tool]
    if field not in params:
        raise fail(f"argument rule {raw!r}: {tool} has no parameter {field!r} (it has: {', '.join(params)})")
    if check in ("contains", "regex"):
        if params[field] != "string":
            raise fail(f"argument rule {raw!r}: {check} needs a string parameter, {field} is not one")
        if not isinstance(expected, str) or not expected:
            raise fail(f"argument rule {raw!r}: {check} needs a non-empty string")
    if check == "regex":
        try:
            re.compile(expected)
        except re.error as error:
            raise fail(f"argument rule {raw!r}: invalid regex: {error}") from error
    if check == "one_of" and (not isinstance(expected, list) or not expected):
        raise fail(f"argument rule {raw!r}: one_of needs a non-empty list")
    if check == "number_equals" and not _is_number(expected):
        raise fail(f"argument rule {raw!r}: number_equals needs a number")
    tolerance = raw.get("tolerance", DEFAULT_TOLERANCE)
    if "tolerance" in raw and check != "number_equals":
        raise fail(f"argument rule {raw!r}: 'tolerance' goes only with number_equals")
    if not _is_number(tolerance) or tolerance < 0:
        raise fail(f"argument rule {raw!r}: 'tolerance' must be a number, 0 or more")
    return Rule(
        call=call - 1,
        field=field,
        check=check,
        expected=tuple(expected) if isinstance(expected, list) else expected,
        tolerance=float(tolerance),
        has_default="default" in raw,
        default=raw.get("default"),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_suite(tasks: Sequence[Task]) -> None:
    """Raise TaskError unless the suite keeps its coverage. The tuning split: enough tasks,
    every bundled tool in at least three single-tool tasks, enough two-step and no-tool tasks.
    The held-out split: every bundled tool in at least two single-tool tasks, enough two-step
    and no-tool tasks. The fresh split, when any of it is loaded: as much as the held-out one."""
    problems = _coverage_problems(
        [task for task in tasks if task.split == "tuning"],
        "tuning",
        MIN_SINGLE_PER_TOOL,
        MIN_TWO_STEP,
        MIN_NO_TOOL,
    )
    tuning = sum(task.split == "tuning" for task in tasks)
    if tuning < MIN_TASKS:
        problems.insert(0, f"{tuning} tuning tasks, fewer than {MIN_TASKS}")
    problems += _coverage_problems(
        [task for task in tasks if task.split == "heldout"],
        "heldout",
        MIN_HELDOUT_SINGLE_PER_TOOL,
        MIN_HELDOUT_TWO_STEP,
        MIN_HELDOUT_NO_TOOL,
    )
    fresh = [task for task in tasks if task.split == "fresh"]
    if fresh:
        problems += _coverage_problems(
            fresh, "fresh", MIN_FRESH_SINGLE_PER_TOOL, MIN_FRESH_TWO_STEP, MIN_FRESH_NO_TOOL
        )
    if problems:
        raise TaskError("the task suite lacks coverage: " + "; ".join(problems))


def _coverage_problems(
    tasks: Sequence[Task], split: str, min_single_per_tool: int, min_two_step: int, min_no_tool: int
) -> list[str]:
    problems = []
    singles = Counter(task.tools[0] for task in tasks if task.kind == "single")
    for tool in BUNDLED_TOOLS:
        if singles[tool] < min_single_per_tool:
            problems.append(
                f"{tool} has {singles[tool]} {split} single-tool tasks, fewer than {min_single_per_tool}"
            )
    kinds = Counter(task.kind for task in tasks)
    if kinds["two_step"] < min_two_step:
        problems.append(f"{kinds['two_step']} {split} two_step tasks, fewer than {min_two_step}")
    if kinds["no_tool"] < min_no_tool:
        problems.append(f"{kinds['no_tool']} {split} no_tool tasks, fewer than {min_no_tool}")
    return problems


def check_selection(kinds: Iterable[str] = (), splits: Iterable[str] = ()) -> None:
    """Refuse unknown kinds and splits."""
    unknown_kinds = sorted(set(kinds) - set(KINDS))
    if unknown_kinds:
        raise TaskError(f"unknown kind {unknown_kinds[0]!r} (known: {', '.join(KINDS)})")
    unknown_splits = sorted(set(splits) - set(SPLITS))
    if unknown_splits:
        raise TaskError(f"unknown split {unknown_splits[0]!r} (known: {', '.join(SPLITS)})")


def select_tasks(
    tasks: Sequence[Task], only: Iterable[str] = (), kinds: Iterable[str] = (), splits: Iterable[str] = ()
) -> list[Task]:
    """The tasks named in `only` (all if empty) whose kind is in `kinds` (any if empty) and
    whose split is in `splits` (any if empty)."""
    wanted, wanted_kinds, wanted_splits = list(only), set(kinds), set(splits)
    check_selection(wanted_kinds, wanted_splits)
    known = {task.id for task in tasks}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise TaskError(f"no task with id {missing[0]!r}")
    return [
        task
        for task in tasks
        if (not wanted or task.id in wanted)
        and (not wanted_kinds or task.kind in wanted_kinds)
        and (not wanted_splits or task.split in wanted_splits)
    ]
