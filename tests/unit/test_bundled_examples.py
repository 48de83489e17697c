"""The worked examples the bundled tools ship: there, valid, true where they can be, and no leak of
the eval's answers (an example that held one would make `make eval` measure copying)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_agent.runtime.tools.metadata import ToolExample
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox, ToolSet

from evals.tasks import load_tasks

EVAL_WORKSPACE = Path(__file__).resolve().parents[2] / "evals" / "workspace"
# Tools whose result depends only on the arguments, so an example's result can be checked.
DETERMINISTIC = ("calc", "echo")


@pytest.fixture(scope="module")
def toolbox(bundled_tools: Path, cache_dir: Path) -> Iterator[Toolbox]:
    toolbox = Toolbox(WasmHost(cache_dir), [bundled_tools])
    toolbox.load_all()
    yield toolbox
    toolbox.close()


@pytest.fixture(scope="module")
def snapshot(toolbox: Toolbox) -> ToolSet:
    return toolbox.snapshot


def example_text(example: ToolExample) -> str:
    arguments = " ".join(f"{name}={value}" for name, value in example.arguments)
    return "\n".join([example.request, arguments, example.result, example.answer])


def test_every_bundled_tool_ships_two_to_five_examples(snapshot: ToolSet) -> None:
    assert len(snapshot.tools) == 8
    for name, tool in snapshot.tools.items():
        assert 2 <= len(tool.loaded.metadata.examples) <= 5, name
        assert tool.loaded.contract.world == "llama-agent:tool/plugin", name


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_examples_of_deterministic_tools_show_their_real_results(toolbox: Toolbox, name: str) -> None:
    for example in toolbox.snapshot.tools[name].loaded.metadata.examples:
        invocation = toolbox.invoke_blocking(name, dict(example.arguments)).invocation
        assert (invocation.is_error, invocation.text) == (False, example.result), example
        assert example.result in example.answer, "the answer quotes the result"


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
