"""Tool metadata 0.2: what `check()` refuses, and the JSON round trip from a worker process."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import pytest
from llama_agent.runtime.tools.metadata import (
    MAX_CHOICES,
    MAX_EXAMPLE_CHARS,
    MAX_EXAMPLES,
    ParamType,
    ToolExample,
    ToolMetadata,
    ToolParam,
    metadata_from_dict,
)
from llama_agent.runtime.wasm.contracts import IncompatibleComponent, NativeContract, contract_from_wire

TEXT = ToolParam("text", "what to search", ParamType.STRING, True)
COUNT = ToolParam("count", "how many", ParamType.INTEGER, False, minimum=1, maximum=100, default=20)
RATIO = ToolParam("ratio", "a share", ParamType.NUMBER, False, minimum=0.0, maximum=1.0, default=0.5)
MODE = ToolParam("mode", "how", ParamType.STRING, False, choices=("fast", "exact"), default="fast")
LOUD = ToolParam("loud", "shout?", ParamType.BOOLEAN, False, default=False)
EXAMPLE = ToolExample(
    "Find 'example' twice, exactly.",
    (("text", "example"), ("count", 2), ("ratio", 0.25), ("mode", "exact"), ("loud", True)),
    "a.txt:1: example\nb.txt:9: example",
    "Two hits: a.txt line 1 and b.txt line 9.",
)
GOOD = ToolMetadata("finder", "finds things", "2.0.0", (TEXT, COUNT, RATIO, MODE, LOUD), (EXAMPLE,))


def with_param(param: ToolParam) -> ToolMetadata:
    return ToolMetadata("tool", "", "1", (param,))


def with_example(*arguments: tuple[str, bool | int | float | str], answer: str = "Done.") -> ToolMetadata:
    return replace(GOOD, examples=(ToolExample("Do it.", arguments, "ok", answer),))


def test_metadata_with_bounds_choices_defaults_and_examples_is_accepted() -> None:
    GOOD.check()


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (with_param(replace(TEXT, minimum=1)), "is a string: minimum and maximum apply only to integer"),
        (with_param(replace(LOUD, maximum=1)), "is a boolean: minimum and maximum apply only"),
        (with_param(replace(COUNT, minimum=1.5, default=None)), "must be a whole number, not 1.5"),
        (with_param(replace(RATIO, maximum=math.inf, default=None)), "bounds must be finite numbers"),
        (with_param(replace(RATIO, minimum=math.nan, default=None)), "bounds must be finite numbers"),
        (
            with_param(replace(COUNT, minimum=10, maximum=5, default=None)),
            r"minimum \(10\) above its maximum \(5\)",
        ),
        (with_param(replace(COUNT, choices=("1",))), "is an integer: choices apply only to string"),
        (with_param(replace(MODE, choices=tuple(f"c{n}" for n in range(MAX_CHOICES + 1)))), "33 choices"),
        (with_param(replace(MODE, choices=("x" * 101,), default=None)), "101 characters; the limit is 100"),
        (with_param(replace(MODE, choices=("a", "b", "a"), default=None)), "lists the choice 'a' twice"),
        (with_param(replace(TEXT, default="x")), "is required, so its default would never be used"),
        (
            with_param(replace(COUNT, default="20")),
            "default of parameter 'count' is a string, not an integer",
        ),
        (with_param(replace(COUNT, default=True)), "is a boolean, not an integer"),
        (with_param(replace(COUNT, default=2.0)), "is a number, not an integer"),
        (with_param(replace(LOUD, default=0)), "is an integer, not a boolean"),
        (with_param(replace(RATIO, default=math.nan)), "is nan, not a finite number"),
        (with_param(replace(COUNT, default=0)), "is 0, below the minimum 1"),
        (with_param(replace(RATIO, default=1.5)), "is 1.5, above the maximum 1"),
        (with_param(replace(MODE, default="slow")), "is 'slow', not one of the choices 'fast', 'exact'"),
    ],
)
def test_params_that_cannot_be_served_are_refused_with_a_reason(
    metadata: ToolMetadata, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        metadata.check()


def test_a_number_param_takes_whole_numbers_too() -> None:
    """JSON semantics: 1 is a number; only booleans are not."""
    with_param(replace(RATIO, default=1)).check()
    with pytest.raises(ValueError, match="is a boolean, not a number"):
        with_param(replace(RATIO, default=True)).check()


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (with_example(("text", "x"), ("colour", "red")), "passes 'colour', which is not a parameter"),
        (with_example(("text", "x"), ("text", "y")), "passes 'text' twice"),
        (with_example(("count", 2)), "leaves out the required parameter 'text'"),
        (with_example(("text", 1)), "argument 'text' is an integer, not a string"),
        (with_example(("text", "x"), ("count", 101)), "argument 'count' is 101, above the maximum 100"),
        (with_example(("text", "x"), ("mode", "fuzzy")), "not one of the choices"),
        (with_example(("text", "x"), ("loud", "yes")), "argument 'loud' is a string, not a boolean"),
        (with_example(("text", "x"), answer=" "), "needs a request and an answer"),
        (
            with_example(("text", "x" * MAX_EXAMPLE_CHARS)),
            "example 1 has 1,017 characters; the limit is 1,000",
        ),
        (replace(GOOD, examples=(EXAMPLE,) * (MAX_EXAMPLES + 1)), "has 9 examples; the limit is 8"),
    ],
)
def test_examples_must_be_calls_the_tool_would_accept(metadata: ToolMetadata, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        metadata.check()


def test_metadata_survives_the_json_trip_from_a_worker_with_its_types() -> None:
    """The worker sends `asdict(metadata)` as JSON; tuples arrive as lists, numbers keep their type."""
    wire = json.loads(json.dumps(asdict(GOOD)))
    back = metadata_from_dict(wire)
    assert back == GOOD
    defaults = {param.name: param.default for param in back.params}
    assert [type(defaults[name]) for name in ("count", "ratio", "mode", "loud")] == [int, float, str, bool]
    assert [type(value) for _, value in back.examples[0].arguments] == [str, int, float, str, bool]
    assert back.params[1].minimum == 1.0 and type(back.params[1].minimum) is float


Damage = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    "damage",
    [
        lambda wire: wire["params"][1].update(default=[20]),
        lambda wire: wire["params"][1].update(minimum="1"),
        lambda wire: wire["params"][3].update(choices="fast"),
        lambda wire: wire["examples"][0].update(arguments=[["text"]]),
        lambda wire: wire["examples"][0].update(arguments=[["text", None]]),
        lambda wire: wire["examples"][0].pop("answer"),
        lambda wire: wire.update(name=7),
    ],
)
def test_malformed_metadata_from_a_worker_is_an_error_not_a_tool(damage: Damage) -> None:
    wire = json.loads(json.dumps(asdict(GOOD)))
    damage(wire)
    with pytest.raises((KeyError, TypeError, ValueError)):
        metadata_from_dict(wire)


@pytest.mark.parametrize(
    ("interface", "minor"), [("llama-agent:tool/tool@0.1.0", 1), ("llama-agent:tool/tool@0.2.3", 2)]
)
def test_the_contract_version_survives_the_trip_to_a_worker(interface: str, minor: int) -> None:
    contract = NativeContract(interface)
    back = contract_from_wire(json.loads(json.dumps(contract.to_wire())))
    assert back == contract
    assert isinstance(back, NativeContract) and back.minor == minor


@pytest.mark.parametrize("interface", ["llama-agent:tool/tool@0.3.0", "llama-agent:tool/tool@1.0.0", "other"])
def test_unknown_contract_versions_are_refused(interface: str) -> None:
    with pytest.raises(IncompatibleComponent):
        contract_from_wire({"world": "llama-agent:tool/plugin", "interface": interface})


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (replace(GOOD, name="finder\n"), "invalid tool name"),  # `$` alone would match before it
        (replace(GOOD, description="read-only\x1b[2K\rread-write"), "U\\+001B"),
        (replace(GOOD, description="harmless \u202etxt.exe"), "U\\+202E"),
        (replace(GOOD, version="1.0\x07"), "U\\+0007"),
        (with_param(replace(TEXT, name="te\x08xt")), "U\\+0008"),
        (with_param(replace(TEXT, description="what\x9b to search")), "U\\+009B"),
        (with_param(replace(MODE, choices=("fast\x00", "exact"), default=None)), "U\\+0000"),
    ],
)
def test_text_a_person_reads_may_hold_no_control_characters(metadata: ToolMetadata, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        metadata.check()


def test_newlines_tabs_and_every_script_are_fine_in_descriptions() -> None:
    replace(GOOD, description="Finds things.\n\tSee also: الملفات, 日本語, zero\u200cwidth joiners").check()
