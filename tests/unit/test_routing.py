"""The router's few-shot text and its choice (the scoring itself: test_model.py, real model)."""

from __future__ import annotations

from daemon.runtime.metadata import ParamType, ToolParam
from daemon.services import routing
from tests.unit.test_prompting import SAY, SHOUT, examples_of, make_tool

PLAIN = make_tool("plain", ToolParam("value", "", ParamType.STRING, True), description="Does plain things.")


def test_shots_interleave_the_tools_example_requests_and_end_with_no_tool_ones() -> None:
    shots = routing.shots([SAY, SHOUT])
    assert shots[:3] == [
        ("say", "Say hello to the cat."),
        ("shout", "Shout it."),
        ("none", routing.NO_TOOL_REQUESTS[0]),
    ]
    assert [name for name, _ in shots].count("say") == 3
    assert [request for name, request in shots if name == "none"] == list(routing.NO_TOOL_REQUESTS)


def test_a_tool_without_examples_gets_a_request_from_its_description() -> None:
    assert routing.shots([PLAIN])[0] == ("plain", "Use plain: does plain things.")


def test_the_prefix_is_the_shots_and_an_option_and_continuation_extend_it_the_same_way() -> None:
    prefix = routing.prefix([SAY])
    assert prefix.startswith(routing.HEADER)
    assert "Tool: say\nRequest: Say hello to the cat.\n\n" in prefix
    # What is scored reads exactly like one more shot.
    assert (
        routing.option("say") + routing.continuation("  Say   it\nagain ")
        == "Tool: say\nRequest: Say it again\n"
    )


def test_the_most_likely_option_wins_and_none_means_no_tool() -> None:
    assert routing.choose(["say", "none"], [-4.0, -2.5]) == routing.Route(None, {"say": -4.0, "none": -2.5})
    assert routing.choose(["say", "shout", "none"], [-2.0, -2.0, -3.0]).tool == "say"  # a tie: the first


def test_no_tool_gets_more_shots_than_the_cap() -> None:
    many = make_tool(
        "many",
        ToolParam("value", "", ParamType.STRING, True),
        examples=examples_of("many", *(f"Do thing {i}." for i in range(6))),
    )
    assert [name for name, _ in routing.shots([many, SAY])].count("many") == routing.SHOTS_PER_TOOL
