"""The agent loop's logic, branch by branch, with a scripted model and real (WAT) components.

What a real model writes differs from machine to machine; what the loop does with a given
turn must not. Each test scripts the model's turns and checks what the loop did with them
and what the model was shown next.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.runtime.wasm.host import Invocation, WasmHost
from llama_agent.services.agent.history import AgentStep
from llama_agent.services.agent.loop import (
    Agent,
    AgentRequest,
    AgentResult,
    InvalidRequest,
)
from llama_agent.services.models import ModelService
from llama_agent.services.tools.registry import CallResult, Toolbox, UnknownTool

from tests.scripted_model import SCRIPT_ENDED, ScriptedModel, answer, call
from tests.wat_tools import tool_wasm


class Recorder:
    """AgentEvents that keeps everything, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_turn_start(self, index: int) -> None:
        self.events.append(("turn", index))

    def on_text(self, text: str) -> None:
        self.events.append(("text", text))

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        self.events.append(("call", (index, tool, arguments)))

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        self.events.append(("result", (index, step)))

    def streamed(self) -> str:
        return "".join(text for kind, text in self.events if kind == "text")


@pytest.fixture(scope="module")
def toolbox(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Toolbox]:
    directory = tmp_path_factory.mktemp("loop-tools")
    (directory / "echo.wasm").write_bytes(tool_wasm("echo", description="Returns its value."))
    (directory / "lookup.wasm").write_bytes(tool_wasm("lookup", behaviour="fail"))
    (directory / "count.wasm").write_bytes(
        tool_wasm("count", params=(("n", "integer", True),), behaviour="version")
    )
    box = Toolbox(WasmHost(cache_dir), [directory])
    box.load_all()
    assert sorted(box.snapshot.tools) == ["count", "echo", "lookup"]
    yield box
    box.close()


class Harness:
    def __init__(self, toolbox: Toolbox, model: ScriptedModel, seed: int = 7) -> None:
        self.model = model
        self.models = ModelService(ModelSettings(seed=seed), Path("."), model.loader())
        self.agent = Agent(toolbox, self.models)
        self.events = Recorder()

    async def run(self, prompt: str = "do it", **options: Any) -> AgentResult:
        return await self.agent.run(AgentRequest(prompt, **options), self.events)

    def schema(self, turn: int) -> Draft202012Validator:
        return Draft202012Validator(self.model.requests[turn].schema)

    def prompt(self, turn: int) -> str:
        return self.model.requests[turn].prompt


@pytest.fixture
async def harness_for(toolbox: Toolbox) -> AsyncIterator[Callable[[ScriptedModel], Harness]]:
    """A harness around a given model; every one made is closed after the test."""
    harnesses: list[Harness] = []

    def make(model: ScriptedModel) -> Harness:
        harnesses.append(Harness(toolbox, model))
        return harnesses[-1]

    yield make
    for harness in harnesses:
        harness.models.close()


@pytest.fixture
def scripted(harness_for: Callable[[ScriptedModel], Harness]) -> Any:
    return lambda *turns, **options: harness_for(ScriptedModel(list(turns), **options))


async def test_a_tool_result_is_fed_back_and_the_answer_ends_the_run(scripted: Any) -> None:
    run = scripted(call("echo", value="Something to echo"), answer("It said: Something to echo"))
    result = await run.run("Please echo back 'Something to echo'")
    assert result.stop_reason == "answer"
    assert result.answer == "It said: Something to echo"
    assert result.steps == [AgentStep("echo", {"value": "Something to echo"}, "Something to echo", False)]
    # The second turn's prompt holds the first turn verbatim and the tool's result after it.
    second = run.prompt(1)
    assert second.startswith(run.prompt(0))
    assert second.endswith(
        f'Assistant: {call("echo", value="Something to echo")}\nResult: "Something to echo"\nAssistant: '
    )


async def test_a_tool_error_is_fed_back_as_an_error_and_the_loop_goes_on(scripted: Any) -> None:
    run = scripted(call("lookup", value="llama"), answer("It failed."))
    result = await run.run()
    assert result.steps == [AgentStep("lookup", {"value": "llama"}, "lookup failed on purpose", True)]
    assert run.prompt(1).endswith('\nError: "lookup failed on purpose"\nAssistant: ')
    assert (result.stop_reason, result.answer) == ("answer", "It failed.")


@pytest.mark.parametrize(
    ("turn", "observation"),
    [
        (call("nope", value="x"), "unknown tool 'nope'"),
        (call("count", n="three"), "'n'"),
        (call("echo"), "'value'"),
    ],
)
async def test_a_call_the_grammar_would_forbid_is_still_validated_and_fed_back(
    scripted: Any, turn: str, observation: str
) -> None:
    run = scripted(turn, answer("sorry"))
    result = await run.run()
    assert len(result.steps) == 1
    assert result.steps[0].is_error
    assert observation in result.steps[0].result
    assert "\nError: " in run.prompt(1)
    assert result.stop_reason == "answer"


async def test_every_turn_is_constrained_to_the_offered_calls_and_an_answer(scripted: Any) -> None:
    run = scripted(answer("hello"))
    await run.run(tools=("echo", "count"))
    schema = run.schema(0)
    assert schema.is_valid(json.loads(call("echo", value="a b c")))
    assert schema.is_valid(json.loads(call("count", n=3)))
    assert schema.is_valid(json.loads(answer("fine")))
    assert not schema.is_valid(json.loads(call("lookup", value="x")))  # not offered
    assert not schema.is_valid(json.loads(call("count", n="3")))
    assert "- lookup:" not in run.prompt(0)


async def test_after_max_steps_calls_only_an_answer_is_allowed(scripted: Any) -> None:
    run = scripted(call("echo", value="a"), call("echo", value="b"), answer("done"))
    result = await run.run(max_steps=2)
    assert [step.arguments["value"] for step in result.steps] == ["a", "b"]
    assert (result.stop_reason, result.answer) == ("maxSteps", "done")
    assert run.schema(1).is_valid(json.loads(call("echo", value="b")))
    final = run.schema(2)
    assert not final.is_valid(json.loads(call("echo", value="c")))
    assert final.is_valid(json.loads(answer("done")))
    assert "Tools: none" in run.prompt(2)


async def test_max_steps_zero_allows_only_an_answer_from_the_start(scripted: Any) -> None:
    run = scripted(answer("straight away"))
    result = await run.run(max_steps=0)
    assert (result.steps, result.stop_reason, result.answer) == ([], "maxSteps", "straight away")
    assert not run.schema(0).is_valid(json.loads(call("echo", value="x")))


async def test_an_identical_call_repeated_is_not_run_and_that_tool_is_ruled_out_next(
    scripted: Any, toolbox: Toolbox
) -> None:
    same = call("echo", value="again")
    run = scripted(same, same, answer("again"))
    result = await run.run(max_steps=5)
    assert [step.arguments["value"] for step in result.steps] == ["again", "again"]
    first, repeat = result.steps
    assert (first.result, first.is_error) == ("again", False)
    assert repeat.is_error and repeat.result.startswith("not run again: echo was already called")
    assert (result.stop_reason, result.answer) == ("answer", "again")
    # The turn after a repeat may answer or call another tool, not the repeated one.
    after = run.schema(2)
    assert not after.is_valid(json.loads(call("echo", value="again")))
    assert not after.is_valid(json.loads(call("echo", value="other")))
    assert after.is_valid(json.loads(call("count", n=1)))
    assert after.is_valid(json.loads(answer("again")))
    assert run.schema(1).is_valid(json.loads(call("echo", value="other")))  # before the repeat: any call


async def test_repeats_never_spend_the_step_budget(scripted: Any) -> None:
    """Going round in circles (a, b, a, b, ...) ends with an answer, not at maxSteps."""
    a, b = call("echo", value="a"), call("count", n=1)
    run = scripted(a, b, a, b, answer("done"))
    result = await run.run(max_steps=5)
    assert (result.stop_reason, result.answer) == ("answer", "done")
    assert [step.is_error for step in result.steps] == [False, False, True, True]
    final = run.schema(4)  # two tools were repeated: only an answer is left
    assert not final.is_valid(json.loads(call("count", n=2)))
    assert final.is_valid(json.loads(answer("done")))


async def test_the_same_tool_with_other_arguments_is_no_repeat(scripted: Any) -> None:
    run = scripted(call("echo", value="a"), call("echo", value="b"), answer("ab"))
    result = await run.run()
    assert [(step.result, step.is_error) for step in result.steps] == [("a", False), ("b", False)]


async def test_a_turn_cut_at_max_tokens_keeps_the_answer_text_so_far(scripted: Any) -> None:
    run = scripted(answer("this answer is far longer than the budget allows"), piece_size=4)
    result = await run.run(max_tokens=5)
    assert result.stop_reason == "maxTokens"
    assert result.answer == "this ans"  # the answer's text, never the raw JSON
    assert result.completion_tokens == 5
    assert run.model.requests[0].max_tokens == 5


async def test_a_runaway_repetition_is_cut_and_its_first_copy_kept(scripted: Any) -> None:
    looping = answer("The file says hi. " * 40)
    run = scripted(looping, answer("next"), piece_size=4)
    result = await run.run(max_tokens=1000)
    assert result.stop_reason == "repetition"
    assert result.answer == "The file says hi."
    assert result.completion_tokens < 60  # stopped soon after the loop showed, not at 1,000 tokens
    assert (await run.run()).answer == "next"


async def test_a_runaway_call_is_not_run(scripted: Any) -> None:
    run = scripted(call("echo", value="ab" * 200), piece_size=2)
    result = await run.run(max_tokens=1000)
    assert (result.steps, result.stop_reason, result.answer) == ([], "repetition", "")


async def test_a_cut_tool_call_is_not_run(scripted: Any) -> None:
    run = scripted(call("echo", value="a long value that will be cut"))
    result = await run.run(max_tokens=4)
    assert (result.steps, result.stop_reason) == ([], "maxTokens")
    assert not any(kind == "call" for kind, _ in run.events.events)


@pytest.mark.parametrize(
    ("turn", "said"),
    [('{"tool": "echo", "argu', ""), ("[1, 2]", ""), ('{"neither": 1}', ""), ('{"answer": "half', "half")],
)
async def test_a_turn_that_does_not_parse_ends_the_run_as_invalid(
    scripted: Any, turn: str, said: str
) -> None:
    run = scripted(turn)
    result = await run.run()
    assert (result.steps, result.stop_reason, result.answer) == ([], "invalidTurn", said)


async def test_usage_adds_up_every_turn(scripted: Any) -> None:
    run = scripted(call("echo", value="x"), answer("x"))
    result = await run.run()
    requests = run.model.requests
    assert result.prompt_tokens == sum(run.model.count_tokens(r.prompt) for r in requests)
    assert result.completion_tokens == sum(r.pieces for r in requests)
    assert len(requests) == 2


async def test_events_stream_the_text_then_each_call_and_its_result(scripted: Any) -> None:
    first, second = call("echo", value="x"), answer("x")
    run = scripted(first, second)
    result = await run.run()
    kinds = [kind for kind, _ in run.events.events]
    call_at, result_at = kinds.index("call"), kinds.index("result")
    assert kinds[0] == "turn" and set(kinds[1:call_at]) == {"text"}
    assert result_at == call_at + 1
    assert kinds[result_at + 1] == "turn" and set(kinds[result_at + 2 :]) == {"text"}
    assert [index for kind, index in run.events.events if kind == "turn"] == [0, 1]
    assert run.events.streamed() == first + second
    assert run.events.events[call_at][1] == (0, "echo", {"value": "x"})
    assert run.events.events[result_at][1] == (0, result.steps[0])


async def test_temperature_and_seed_reach_the_model(scripted: Any) -> None:
    run = scripted(answer("a"), answer("b"))
    await run.run(temperature=0.7, seed=42)
    await run.run()
    assert [(r.temperature, r.seed) for r in run.model.requests] == [(0.7, 42), (0.0, 7)]


async def test_tool_choice_required_forbids_answering_on_the_first_turn_only(scripted: Any) -> None:
    run = scripted(call("count", n=2), answer("two"))
    result = await run.run(tool_choice="required")
    assert result.steps[0].tool == "count"
    first, second = run.schema(0), run.schema(1)
    assert not first.is_valid(json.loads(answer("no")))
    assert first.is_valid(json.loads(call("echo", value="x")))
    assert first.is_valid(json.loads(call("count", n=1)))
    assert second.is_valid(json.loads(answer("no")))


async def test_tool_choice_by_name_forces_that_tool_first_and_keeps_the_prompt(scripted: Any) -> None:
    run = scripted(call("echo", value="x"), answer("x"))
    await run.run(tool_choice="echo")
    first = run.schema(0)
    assert first.is_valid(json.loads(call("echo", value="x")))
    assert not first.is_valid(json.loads(call("count", n=1)))
    assert not first.is_valid(json.loads(answer("no")))
    # Every offered tool is still described, so the second turn's prompt extends the first.
    assert "- count:" in run.prompt(0)
    assert run.prompt(1).startswith(run.prompt(0))


async def test_tool_choice_none_offers_no_tool(scripted: Any) -> None:
    run = scripted(answer("just talking"))
    result = await run.run(tool_choice="none")
    assert (result.steps, result.stop_reason) == ([], "answer")
    assert not run.schema(0).is_valid(json.loads(call("echo", value="x")))
    assert "Tools: none" in run.prompt(0)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"tool_choice": "lookup", "tools": ("echo",)}, "'lookup' is not offered"),
        ({"tool_choice": "sometimes"}, "'sometimes' is not offered"),
        ({"tool_choice": "required", "tools": ()}, "needs at least one tool"),
    ],
)
async def test_an_impossible_tool_choice_is_refused_before_the_model_runs(
    scripted: Any, options: dict[str, Any], fragment: str
) -> None:
    run = scripted(answer("never"))
    with pytest.raises(InvalidRequest, match=fragment) as raised:
        await run.run(**options)
    assert raised.value.field == "toolChoice"
    assert run.model.requests == []


async def test_unknown_tools_in_the_request_are_refused(scripted: Any) -> None:
    run = scripted(answer("never"))
    with pytest.raises(UnknownTool, match="'nope'"):
        await run.run(tools=("echo", "nope"))
    assert run.model.requests == []


async def test_a_model_with_a_chat_template_gets_chat_messages(scripted: Any) -> None:
    run = scripted(call("echo", value="x"), answer("x"), chat_template="{{ messages }}")
    result = await run.run("Please echo back 'x'")
    assert result.prompt_format == "chatTemplate"
    last = run.model.chats[-1]
    assert [m["role"] for m in last[-3:]] == ["user", "assistant", "user"]
    assert last[-3]["content"].endswith("Please echo back 'x'")
    assert last[-2]["content"] == call("echo", value="x")
    assert last[-1]["content"] == 'Result: "x"'


async def test_cancelling_a_run_stops_generation_at_the_next_token_and_frees_the_model(
    scripted: Any,
) -> None:
    run = scripted(answer("word " * 2000), answer("next"), piece_delay=0.01)
    task = asyncio.create_task(run.run(max_tokens=5000))
    while not run.events.events:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    following = await asyncio.wait_for(run.run(), 5)  # the model thread is free again
    assert following.answer == "next"
    cut = run.model.requests[0]
    assert cut.stop_reason == "cancelled"
    assert cut.pieces < 100


async def test_runs_are_served_one_at_a_time_in_arrival_order(scripted: Any) -> None:
    long_first = " ".join(f"first{n}" for n in range(20))
    run = scripted(answer(long_first), answer("second"), piece_delay=0.005)
    first = asyncio.create_task(run.run("one"))
    await asyncio.sleep(0)
    second = asyncio.create_task(run.run("two"))
    results = await asyncio.gather(first, second)
    assert [r.answer for r in results] == [long_first, "second"]
    prompts = [r.prompt for r in run.model.requests]
    assert prompts[0].endswith("User: one\nAssistant: ")
    assert prompts[1].endswith("User: two\nAssistant: ")


async def test_when_the_script_runs_out_the_model_answers(scripted: Any) -> None:
    run = scripted()
    result = await run.run()
    assert result.answer == json.loads(SCRIPT_ENDED)["answer"]


class ScoringModel(ScriptedModel):
    """A scripted model that can also score: the router asks it how likely the request is after
    each option, and it answers from `likelihoods` (option name -> log-likelihood), or for a
    request of several clauses, from `likelihoods[clause]`."""

    def __init__(
        self, turns: list[str], likelihoods: dict[str, float] | dict[str, dict[str, float]] | Exception
    ) -> None:
        super().__init__(turns)
        self.likelihoods = likelihoods
        self.scored: list[tuple[str, list[str], str]] = []

    def log_likelihoods(
        self, prefix: str, options: Sequence[str], continuation: str, context: str = ""
    ) -> list[float]:
        self.scored.append((prefix, list(options), continuation))
        if isinstance(self.likelihoods, Exception):
            raise self.likelihoods
        table: dict[str, Any] = self.likelihoods.get(continuation.strip(), self.likelihoods)  # type: ignore[assignment]
        names = [option.removeprefix("Tool: ").removesuffix("\nRequest:") for option in options]
        return [float(table.get(name, -100.0)) for name in names]


@pytest.fixture
def routed(harness_for: Callable[[ScriptedModel], Harness]) -> Any:
    return lambda likelihoods, *turns: harness_for(ScoringModel(list(turns), likelihoods))


async def test_the_router_picks_the_first_tool_and_the_first_turn_may_only_call_it(routed: Any) -> None:
    run = routed({"count": -3.0, "echo": -9.0, "none": -12.0}, call("count", n=2), answer("two"))
    result = await run.run("count to two")
    assert [step.tool for step in result.steps] == ["count"]
    prefix, options, continuation = run.model.scored[0]
    assert prefix.startswith("Each request below follows the tool it needs")
    assert options == [
        "Tool: count\nRequest:",
        "Tool: echo\nRequest:",
        "Tool: lookup\nRequest:",
        "Tool: none\nRequest:",
    ]
    assert continuation == " count to two\n"
    first, second = run.schema(0), run.schema(1)
    assert first.is_valid(json.loads(call("count", n=1)))
    assert not first.is_valid(json.loads(call("echo", value="x")))
    assert not first.is_valid(json.loads(answer("no")))
    # After the first call the model decides again, among every tool and the answer.
    assert second.is_valid(json.loads(answer("two")))
    assert second.is_valid(json.loads(call("echo", value="x")))
    # Every tool stays described, so the second turn's prompt extends the first.
    assert "- echo:" in run.prompt(0)
    assert run.prompt(1).startswith(run.prompt(0))


async def test_a_request_routed_to_no_tool_gets_an_answer_only_turn(routed: Any) -> None:
    run = routed({"none": -1.0, "echo": -5.0}, answer("Paris"))
    result = await run.run("What is the capital of France?")
    assert (result.answer, result.steps, len(run.model.requests)) == ("Paris", [], 1)
    assert not run.schema(0).is_valid(json.loads(call("echo", value="x")))
    assert "Tools: none" in run.prompt(0)


async def test_tool_choice_required_routes_among_the_tools_only(routed: Any) -> None:
    run = routed({"none": -1.0, "echo": -5.0}, call("echo", value="x"), answer("x"))
    await run.run("hello", tool_choice="required")
    assert "Tool: none\nRequest:" not in run.model.scored[0][1]
    assert run.schema(0).is_valid(json.loads(call("echo", value="x")))
    assert not run.schema(0).is_valid(json.loads(call("count", n=1)))


@pytest.mark.parametrize("choice", ["none", "echo"])
async def test_a_choice_the_request_makes_is_not_routed(routed: Any, choice: str) -> None:
    run = routed({"count": -1.0}, call("echo", value="x") if choice == "echo" else answer("a"), answer("x"))
    await run.run("hello", tool_choice=choice)
    assert run.model.scored == []


async def test_a_router_that_fails_leaves_the_choice_to_the_model(routed: Any) -> None:
    run = routed(ValueError("the scoring prompt does not fit"), answer("fine"))
    result = await run.run("hello")
    assert result.answer == "fine"
    assert run.schema(0).is_valid(json.loads(call("echo", value="x")))
    assert run.schema(0).is_valid(json.loads(answer("x")))


async def test_a_planned_second_call_is_forced_then_the_model_decides_again(
    routed: Any,
) -> None:
    likelihoods = {
        "count to two": {"count": -2.0, "none": -9.0},
        "echo the result": {"echo": -1.0, "none": -8.0},
    }
    run = routed(likelihoods, call("count", n=2), call("echo", value="2"), answer("2"))
    result = await run.run("count to two, then echo the result")
    assert [step.tool for step in result.steps] == ["count", "echo"]
    second, third = run.schema(1), run.schema(2)
    assert second.is_valid(json.loads(call("echo", value="x")))
    assert not second.is_valid(json.loads(call("count", n=1)))
    assert not second.is_valid(json.loads(answer("2")))
    # After the plan, the model decides again, and its prompt extends the last planned turn's.
    assert third.is_valid(json.loads(answer("2"))) and third.is_valid(json.loads(call("count", n=3)))
    assert run.prompt(2).startswith(run.prompt(1))


async def test_a_failed_call_ends_the_plan(routed: Any) -> None:
    likelihoods = {
        "look it up": {"lookup": -2.0, "none": -9.0},
        "echo the result": {"echo": -1.0, "none": -8.0},
    }
    run = routed(likelihoods, call("lookup", value="x"), answer("it failed"))
    result = await run.run("look it up, then echo the result")
    assert result.steps[0].is_error
    assert run.schema(1).is_valid(json.loads(answer("it failed")))
    assert run.schema(1).is_valid(json.loads(call("count", n=1)))


async def test_a_planned_call_that_runs_away_is_decided_again_by_the_model(routed: Any) -> None:
    run = routed({"count": -1.0, "none": -9.0}, call("count", n=10**300), answer("seven"))
    result = await run.run("how many days are in a week?", max_tokens=30)
    assert (result.answer, result.steps, result.stop_reason) == ("seven", [], "answer")
    assert not run.schema(0).is_valid(json.loads(answer("seven")))
    # The second try is the model's own choice: every tool or the answer.
    assert run.schema(1).is_valid(json.loads(answer("seven")))
    assert run.schema(1).is_valid(json.loads(call("echo", value="x")))


async def test_a_planned_call_cut_at_max_tokens_ends_the_run_the_budget_is_the_clients(routed: Any) -> None:
    run = routed(
        {"echo": -1.0, "none": -9.0}, call("echo", value="a long value that will be cut"), answer("x")
    )
    result = await run.run("echo it", max_tokens=4)
    assert (result.steps, result.stop_reason, len(run.model.requests)) == ([], "maxTokens", 1)


async def test_a_call_the_request_forces_that_runs_away_still_ends_the_run(routed: Any) -> None:
    run = routed({"count": -1.0}, call("count", n=10**300), answer("never asked"))
    result = await run.run("count them", tool_choice="count", max_tokens=30)
    assert (result.steps, result.stop_reason, len(run.model.requests)) == ([], "repetition", 1)


async def test_only_one_second_try(routed: Any) -> None:
    runaway = call("count", n=10**300)
    run = routed({"count": -1.0, "none": -9.0}, runaway, runaway, answer("never asked"))
    result = await run.run("count them", max_tokens=30)
    assert (result.stop_reason, len(run.model.requests)) == ("repetition", 2)


async def test_a_near_copy_of_a_file_name_is_called_and_shown_as_the_request_wrote_it(scripted: Any) -> None:
    run = scripted(call("echo", value="readme.MD"), answer("done"))
    result = await run.run("echo docs/README.md")
    assert result.steps[0].arguments == {"value": "docs/README.md"}
    assert ("call", (0, "echo", {"value": "docs/README.md"})) in run.events.events
    assert run.prompt(1).endswith(
        call("echo", value="docs/README.md") + '\nResult: "docs/README.md"\nAssistant: '
    )


DECLINED = "not run: the person declined this call"


async def test_the_run_makes_its_calls_through_the_caller_given_and_the_model_reads_a_refusal(
    scripted: Any, toolbox: Toolbox
) -> None:
    """A session makes a run's calls (its workspace, its consent): what it answers is the step."""
    asked: list[tuple[str, dict[str, Any]]] = []

    class Declining:
        async def invoke(self, name: str, arguments: dict[str, Any]) -> CallResult:
            asked.append((name, arguments))
            if name != "count":
                return await toolbox.invoke(name, arguments)
            refused = Invocation(DECLINED, True, "", "", False, False, 0.0)
            return CallResult(toolbox.snapshot.tools[name], refused)

    run = scripted(call("count", n=2), call("echo", value="x"), answer("done"))
    result = await run.agent.run(AgentRequest("count, then echo"), run.events, Declining())
    assert asked == [("count", {"n": 2}), ("echo", {"value": "x"})]
    declined, echoed = result.steps
    assert (declined.is_error, declined.result) == (True, DECLINED)
    assert (echoed.is_error, echoed.result) == (False, "x")
    assert "declined" in run.prompt(1)
