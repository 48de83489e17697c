"""The worked examples the bundled tools ship: there, valid, true (each result is what the tool
returns for those arguments, in a workspace made to match), answers that quote their results, and
no leak of the eval's answers (an example that held one would make `make eval` measure copying)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from llama_agent.runtime.tools.metadata import ToolExample
from llama_agent.runtime.tools.policy import DirGrant
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox, ToolSet

from evals.tasks import load_tasks

EVAL_WORKSPACE = Path(__file__).resolve().parents[2] / "evals" / "workspace"
# Tools whose result depends only on the arguments, so an example's result can be checked as is.
DETERMINISTIC = ("calc", "echo", "print")
# `2001-02-03T04:05:06+13:00 (Pacific/Auckland)`
DATETIME_RESULT = re.compile(r"(?P<stamp>\S+) \((?P<zone>[^()]+)\)")
LIST_ENTRY = re.compile(r"(?P<name>.+) \((?P<size>\d+) bytes\)")
SEARCH_HIT = re.compile(r"(?P<path>[^:]+):(?P<line>\d+): (?P<text>.*)")


@pytest.fixture(scope="module")
def toolbox(bundled_tools: Path, cache_dir: Path) -> Iterator[Toolbox]:
    toolbox = Toolbox(WasmHost(cache_dir), [bundled_tools])
    toolbox.load_all()
    yield toolbox
    toolbox.close()


@pytest.fixture(scope="module")
def snapshot(toolbox: Toolbox) -> ToolSet:
    return toolbox.snapshot


def examples_of(snapshot: ToolSet, name: str) -> tuple[ToolExample, ...]:
    return snapshot.tools[name].loaded.metadata.examples


def example_text(example: ToolExample) -> str:
    arguments = " ".join(f"{name}={value}" for name, value in example.arguments)
    return "\n".join([example.request, arguments, example.result, example.answer])


def test_every_bundled_tool_ships_two_to_five_examples(snapshot: ToolSet) -> None:
    """The router reads the first three as its shots: a third for echo or print (a shell idiom,
    `echo hi`, `print("x")`) drew greetings to echo and prints to the file tools."""
    assert len(snapshot.tools) == 8
    for name, tool in snapshot.tools.items():
        assert 2 <= len(tool.loaded.metadata.examples) <= 5, name
        assert tool.loaded.contract.world == "llama-agent:tool/plugin", name


def test_the_last_example_of_every_tool_quotes_its_result(snapshot: ToolSet) -> None:
    """A small model answers as its examples do: the last example of each tool quotes each line
    of its result verbatim. The ones before it answer in their own words, as they always have:
    rewording them cost the agent more than it gained."""
    for name, tool in snapshot.tools.items():
        example = tool.loaded.metadata.examples[-1]
        lines = [line.strip() for line in example.result.splitlines() if line.strip()]
        assert lines, (name, example.request)
        assert [line for line in lines if line not in example.answer] == [], (name, example.request)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_examples_of_deterministic_tools_show_their_real_results(toolbox: Toolbox, name: str) -> None:
    for example in examples_of(toolbox.snapshot, name):
        called = toolbox.invoke_blocking(name, dict(example.arguments))
        # What the agent sees of a call: what the tool returned, then what it printed.
        assert (called.invocation.is_error, "\n".join(called.texts())) == (False, example.result), example


def file_for_read(workspace: Path, arguments: dict[str, Any], result: str) -> None:
    """The file the example reads: its result at the lines asked for, other lines around them."""
    before = "".join(f"line {number}\n" for number in range(1, arguments.get("start_line", 1)))
    after = "and a line after the range\n" if "end_line" in arguments else ""
    write(workspace / arguments["path"], before + result + after)


def directory_for_listing(workspace: Path, arguments: dict[str, Any], result: str) -> None:
    """The directory the example lists: a subdirectory per `name/`, a file of N bytes per
    `name (N bytes)`."""
    directory = workspace / arguments.get("path", ".")
    directory.mkdir(parents=True, exist_ok=True)
    for entry in result.splitlines():
        if entry.endswith("/"):
            (directory / entry).mkdir()
        else:
            listed = LIST_ENTRY.fullmatch(entry)
            assert listed, entry
            (directory / listed["name"]).write_bytes(b"x" * int(listed["size"]))


def files_for_search(workspace: Path, arguments: dict[str, Any], result: str) -> None:
    """The files the example searches: each hit's text at its line, empty lines before it."""
    files: dict[str, dict[int, str]] = {}
    for hit in result.splitlines():
        found = SEARCH_HIT.fullmatch(hit)
        assert found, hit
        files.setdefault(found["path"], {})[int(found["line"])] = found["text"]
    for path, lines in files.items():
        write(workspace / path, "".join(f"{lines.get(n, '')}\n" for n in range(1, max(lines) + 1)))


def nothing_to_write_over(workspace: Path, arguments: dict[str, Any], result: str) -> None:
    """write_file makes its file and directories: the workspace starts empty."""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


WORKSPACE_FOR: dict[str, Callable[[Path, dict[str, Any], str], None]] = {
    "read_file": file_for_read,
    "list_dir": directory_for_listing,
    "search_text": files_for_search,
    "write_file": nothing_to_write_over,
}


@pytest.mark.parametrize("name", sorted(WORKSPACE_FOR))
def test_examples_of_workspace_tools_show_what_they_return_in_such_a_workspace(
    toolbox: Toolbox, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    for example in examples_of(toolbox.snapshot, name):
        arguments = dict(example.arguments)
        workspace = tmp_path_factory.mktemp(name).resolve()
        WORKSPACE_FOR[name](workspace, arguments, example.result)
        tool, coerced = toolbox.prepare_call(name, arguments)
        grant = DirGrant(workspace, "/workspace", "rw" if name == "write_file" else "ro")
        invocation = toolbox.host.invoke(tool.loaded, coerced, replace(tool.grants, dirs=(grant,)))
        assert (invocation.is_error, invocation.text) == (False, example.result), example


def test_datetime_examples_show_a_past_time_in_the_zone_the_tool_resolves(toolbox: Toolbox) -> None:
    """Each result is a time long past, with the offset its zone had then, and names the zone the
    tool resolves the example's argument to (a city or a country as the request names it)."""
    for example in examples_of(toolbox.snapshot, "datetime"):
        shown = DATETIME_RESULT.fullmatch(example.result)
        assert shown, example.result
        moment = datetime.fromisoformat(shown["stamp"])
        assert moment.isoformat(timespec="seconds") == shown["stamp"]
        assert moment.year < 2010, "nobody takes a date long past for the current one"
        assert moment.utcoffset() == moment.astimezone(ZoneInfo(shown["zone"])).utcoffset(), example
        now = toolbox.invoke_blocking("datetime", dict(example.arguments)).invocation
        assert (now.is_error, now.text.endswith(f" ({shown['zone']})")) == (False, True), (example, now.text)


def test_a_datetime_example_passes_a_city_as_the_request_names_it(snapshot: ToolSet) -> None:
    cities = [
        value
        for example in examples_of(snapshot, "datetime")
        for name, value in example.arguments
        if name == "timezone" and isinstance(value, str) and "/" not in value and value in example.request
    ]
    assert cities == ["Auckland", "London", "UTC", "Nairobi"]


def test_no_example_gives_away_an_eval_answer_or_file(snapshot: ToolSet) -> None:
    """Whole words only, and only from tasks that call tools: "7 days in a week" is no secret."""
    tasks = [task for task in load_tasks() if task.tools]
    answers = {answer.lower() for task in tasks for answer in task.answer_contains}
    prompts = {task.prompt.lower() for task in tasks}
    files = {path.name.lower() for path in EVAL_WORKSPACE.rglob("*") if path.is_file()}
    for name, tool in snapshot.tools.items():
        for example in tool.loaded.metadata.examples:
            text = example_text(example).lower()
            leaked = sorted(word for word in answers | files if re.search(rf"\b{re.escape(word)}\b", text))
            assert leaked == [], (name, leaked)
            assert example.request.lower() not in prompts, name
