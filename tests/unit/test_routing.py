"""The router's few-shot text and its choice (the scoring itself: test_model.py, real model)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from llama_agent.runtime.tools.metadata import ParamType, ToolParam
from llama_agent.services.agent import routing

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


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        (
            "Read notes.txt and then echo back its first word.",
            ["Read notes.txt", "echo back its first word."],
        ),
        ("Find it, then open that file and tell me more.", ["Find it", "open that file", "tell me more."]),
        ("Read a.txt. Then print it.", ["Read a.txt", "print it."]),
        ("Sort these; then count them", ["Sort these", "count them"]),
        # A piece of one word stays with its neighbour.
        ("Who wrote Romeo and Juliet?", ["Who wrote Romeo and Juliet?"]),
        ("Hi and read notes.txt", ["Hi and read notes.txt"]),
        # Quoted text and text after ": " is content, never split.
        ("Echo 'salt and pepper' and print it", ["Echo 'salt and pepper'", "print it"]),
        ('Print "this and that"', ['Print "this and that"']),
        ("Say back to me: good morning and good night", ["Say back to me: good morning and good night"]),
        ("", [""]),
    ],
)
def test_a_request_splits_into_clauses(request_text: str, expected: list[str]) -> None:
    assert routing.clauses(request_text) == expected


def scorer(by_clause: dict[str, dict[str, float]]) -> tuple[routing.Scorer, list[tuple[list[str], str]]]:
    """An async scorer answering per clause (option name -> log-likelihood; absent: -100)."""
    asked: list[tuple[list[str], str]] = []

    async def score(prefix: str, options: Sequence[str], continuation: str, context: str = "") -> list[float]:
        names = [option.removeprefix("Tool: ").removesuffix("\nRequest:") for option in options]
        asked.append((names, continuation))
        table = by_clause[continuation.strip()]
        return [table.get(name, -100.0) for name in names]

    return score, asked


async def test_a_later_clause_adds_a_step_only_when_its_tool_is_clearly_likelier_than_none() -> None:
    score, asked = scorer(
        {
            "say it": {"say": -3.0, "none": -9.0},
            "shout it": {"shout": -4.0, "none": -4.0 - routing.LATER_MARGIN},
            "whisper something": {"say": -5.0, "none": -5.5},  # likelier, but not clearly
        }
    )
    route = await routing.route(score, [SAY, SHOUT], "say it, then shout it and then whisper something")
    assert (route.tool, route.plan, route.steps) == ("say", ("shout",), ("say", "shout"))
    assert list(dict.fromkeys(continuation for _, continuation in asked)) == [
        " say it\n",
        " shout it\n",
        " whisper something\n",
    ]
    # No scoring prunes "none" here, so none needs a scoring of its own.
    assert all(len(options) == 3 for options, _ in asked)
    assert (route.planned(0), route.planned(1), route.planned(2)) == ("say", "shout", None)
    assert (route.focus(0), route.focus(1), route.focus(5)) == ("say", "shout", "shout")


async def test_a_first_clause_for_no_tool_leaves_the_later_clauses_plan() -> None:
    score, _ = scorer({"hello there": {"none": -1.0, "say": -6.0}, "say it": {"say": -2.0, "none": -8.0}})
    route = await routing.route(score, [SAY], "hello there and say it")
    assert (route.tool, route.steps) == (None, ("say",))
    plain, _ = scorer({"hello there": {"none": -1.0, "say": -6.0}})
    assert (await routing.route(plain, [SAY], "hello there")).steps == ()


async def test_without_none_the_first_clause_routes_among_the_tools_only() -> None:
    score, asked = scorer({"hello": {"none": -1.0, "say": -6.0, "shout": -7.0}})
    route = await routing.route(score, [SAY, SHOUT], "hello", allow_none=False)
    assert route.tool == "say"
    assert asked[0][0] == ["say", "shout"]


async def test_the_first_clause_calls_a_tool_only_when_it_beats_none_by_the_first_margin() -> None:
    close = -5.0 + routing.FIRST_MARGIN / 2
    score, _ = scorer({"how many days in a week": {"say": close, "none": -5.0}})
    route = await routing.route(score, [SAY], "how many days in a week")
    assert (route.tool, route.scores["say"], route.scores["none"]) == (None, close, -5.0)
    clear, _ = scorer({"say hi": {"say": -5.0 + routing.FIRST_MARGIN, "none": -5.0}})
    assert (await routing.route(clear, [SAY], "say hi")).tool == "say"


async def test_a_clause_whose_none_was_pruned_compares_the_winner_with_none_in_full() -> None:
    asked: list[list[str]] = []

    async def score(prefix: str, options: Sequence[str], continuation: str, context: str = "") -> list[float]:
        names = [option.removeprefix("Tool: ").removesuffix("\nRequest:") for option in options]
        asked.append(names)
        if len(names) > 2:  # as the scorer does beyond its finalists
            return [-2.0 if name == "say" else -math.inf for name in names]
        return [-2.0, -2.0 - routing.FIRST_MARGIN / 2]  # say, none in full: too close

    route = await routing.route(score, [SAY, SHOUT], "say it")
    assert asked == [["say", "shout", "none"], ["say", "none"]]
    assert route.tool is None


def classifier(by_clause: dict[str, dict[str, float]]) -> tuple[routing.Classifier, list[tuple[str, str]]]:
    """An async direct classifier answering per clause (tool name -> log-likelihood)."""
    asked: list[tuple[str, str]] = []

    async def classify(prefix: str, context: str, candidates: Sequence[str]) -> list[float]:
        asked.append((prefix, context))
        clause = context.rsplit("Request: ", 1)[1].removesuffix("\nTool:")
        return [by_clause[clause].get(candidate.strip(), -100.0) for candidate in candidates]

    return classify, asked


async def test_the_direct_question_outweighs_a_channel_that_is_only_a_little_surer() -> None:
    # The channel leans to shout by 1 nat; asked directly, the model is sure of say.
    score, _ = scorer({"cat it": {"say": -6.0, "shout": -5.0, "none": -12.0}})
    classify, asked = classifier({"cat it": {"say": -0.1, "shout": -6.0, "none": -5.0}})
    route = await routing.route(score, [SAY, SHOUT], "cat it", classify=classify)
    assert route.tool == "say"
    assert (await routing.route(score, [SAY, SHOUT], "cat it")).tool == "shout"  # channel alone
    prefix, context = asked[0]
    assert prefix == routing.direct_prefix([SAY, SHOUT])
    assert "Request: Say hello to the cat.\nTool: say\n\n" in prefix
    assert context == "Request: cat it\nTool:"
    # The direct answer is normalised over the options and weighed: say's channel score moves by
    # DIRECT_WEIGHT times its log-probability among the three.
    total = math.log(sum(math.exp(v) for v in (-0.1, -6.0, -5.0)))
    assert route.scores["say"] == pytest.approx(-6.0 + routing.DIRECT_WEIGHT * (-0.1 - total))


async def test_a_direct_no_tool_answer_can_keep_a_clause_from_a_tool_and_sees_the_conversation() -> None:
    score, _ = scorer({"thanks a lot": {"say": -5.0, "none": -5.0 - routing.FIRST_MARGIN - 0.5}})
    classify, asked = classifier({"thanks a lot": {"say": -8.0, "none": -0.01}})
    earlier = [("say", "say hi"), (None, "how are you")]
    route = await routing.route(score, [SAY], "thanks a lot", earlier=earlier, classify=classify)
    assert route.tool is None
    assert (
        asked[0][1]
        == "Request: say hi\nTool: say\n\nRequest: how are you\nTool: none\n\nRequest: thanks a lot\nTool:"
    )


async def test_the_channel_scores_only_the_directly_likeliest_tools_and_none() -> None:
    tools = [make_tool(name, ToolParam("value", "", ParamType.STRING, True)) for name in "abcde"]
    direct = {"a": -9.0, "b": -1.0, "c": -2.0, "d": -8.0, "e": -3.0, "none": -4.0}
    score, asked = scorer({"do it": {"a": -1.0, "b": -6.0, "c": -5.0, "e": -7.0, "none": -9.0}})
    classify, _ = classifier({"do it": direct})
    route = await routing.route(score, tools, "do it", classify=classify)
    assert asked == [(["b", "c", "e", "none"], " do it\n")]  # "a" is the channel's favourite, unasked
    assert route.tool == "c"
    assert route.scores["a"] == -math.inf and route.scores["d"] == -math.inf
