"""A conversation's record, its window, its budget, and what the router makes of a follow-up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from llama_agent.common.errors import InvalidParams, TooManySessions
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.runtime.tools.metadata import ParamType, ToolParam
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.agent import routing
from llama_agent.services.agent.budget import (
    HISTORY_TOKENS,
    MIN_RESULT_CHARS,
    SHARED_RESULT_CHARS,
    Budget,
    fitted,
)
from llama_agent.services.agent.history import (
    MAX_TURNS,
    RECORDED_RESULT_CHARS,
    AgentStep,
    Conversation,
    Conversations,
    PastTurn,
)
from llama_agent.services.agent.loop import Agent, AgentRequest
from llama_agent.services.agent.prompting import OBSERVATION_LIMIT, PromptContext, history_text
from llama_agent.services.models import ModelService
from llama_agent.services.tools.registry import Tool, Toolbox

from tests.scripted_model import ScriptedModel, answer, call
from tests.unit.test_agent_loop import Recorder
from tests.unit.test_prompting import make_tool
from tests.wat_tools import tool_wasm


def answered(request: str, answer: str = "ok", result: str | None = None) -> PastTurn:
    steps = (AgentStep("echo", {"value": request}, result, False),) if result is not None else ()
    return PastTurn(request, steps, answer, "answered")


def cancelled(request: str) -> PastTurn:
    return PastTurn(request, (), "", "cancelled")


def test_cancelled_and_failed_turns_are_kept_on_record_but_never_shown() -> None:
    conversation = Conversation("c")
    for turn in [
        answered("one"),
        cancelled("two"),
        PastTurn("three", (), "", "failed"),
        PastTurn("four", (), "partial", "stopped"),
    ]:
        conversation.record(turn)
    assert [turn.request for turn in conversation.shown()] == ["one", "four"]
    assert len(conversation.turns) == 4


@pytest.mark.parametrize(
    ("last", "prompt", "asked"),
    [
        (cancelled("Tell me a story"), "Tell me a story\nWhat time is it?", "What time is it?"),
        (cancelled("Tell me a story"), "  Tell me a story \n\n What time is it? ", "What time is it?"),
        (cancelled("Tell me a story"), "Tell me a story", "Tell me a story"),  # a retry
        (cancelled("Tell me a story"), "What time is it?", "What time is it?"),
        (
            answered("Tell me a story"),
            "Tell me a story\nWhat time is it?",
            "Tell me a story\nWhat time is it?",
        ),
    ],
)
def test_a_resent_stopped_message_is_not_answered_again(last: PastTurn, prompt: str, asked: str) -> None:
    conversation = Conversation("c")
    conversation.record(last)
    assert conversation.unanswered(prompt) == asked


def test_the_record_is_bounded_in_turns_and_in_each_result() -> None:
    conversation = Conversation("c")
    for i in range(MAX_TURNS + 5):
        conversation.record(answered(f"r{i}", result="y" * (RECORDED_RESULT_CHARS + 10)))
    assert len(conversation.turns) == MAX_TURNS
    assert conversation.turns[0].request == "r5"
    assert conversation.turns[-1].steps[0].result.endswith("y [cut: 10 more characters]")


def test_the_window_moves_past_the_oldest_shown_turns() -> None:
    conversation = Conversation("c")
    for turn in [answered("a"), cancelled("b"), answered("c"), answered("d"), answered("e")]:
        conversation.record(turn)
    conversation.drop_oldest(keep=2)
    assert [turn.request for turn in conversation.shown()] == ["d", "e"]
    conversation.drop_oldest(keep=0)
    assert conversation.shown() == []
    conversation.record(answered("f"))
    assert [turn.request for turn in conversation.shown()] == ["f"]


def test_conversations_are_bounded_and_forgotten() -> None:
    held = Conversations(limit=2)
    first, second = held.new(), held.new()
    assert first.id != second.id
    held.get(first.id)  # now the most recently used
    third = held.new()
    assert {c.id for c in held} == {first.id, third.id}  # the least recently used went
    with pytest.raises(InvalidParams) as raised:
        held.get(second.id)
    assert "sessionId" in str(raised.value.data)
    assert held.forget(first.id) and not held.forget(first.id)


async def test_a_conversation_with_a_run_going_is_never_made_room_for() -> None:
    held = Conversations(limit=1)
    busy = held.new()
    async with busy.lock:
        with pytest.raises(TooManySessions):
            held.new()


def words(text: str) -> int:
    return len(text.split())


def build(context: PromptContext) -> str:
    """A prompt of 100 words of instructions, the history, and one result of this run."""
    result = "r " * 3000
    shown = result if len(result) <= context.result_limit else result[: context.result_limit]
    return "w " * 100 + history_text(context.history) + shown


def test_history_stays_within_its_own_budget() -> None:
    conversation = Conversation("c")
    for i in range(200):
        conversation.record(answered(f"request {i} " + "word " * 20))
    budget = Budget(context=100_000, count=words, max_tokens=10)
    _, context = fitted(build, budget, conversation)
    assert words(history_text(context.history)) <= HISTORY_TOKENS
    assert len(context.history) >= HISTORY_TOKENS // 50  # halved, not emptied
    assert context.history[-1].request.startswith("request 199 ")
    assert context.result_limit == OBSERVATION_LIMIT


def test_results_shrink_first_then_the_history_gives_way_then_results_shrink_again() -> None:
    conversation = Conversation("c")
    for i in range(8):
        conversation.record(answered(f"request {i} " + "word " * 20))

    roomy = Budget(context=100 + 8 * 40 + SHARED_RESULT_CHARS // 2 + 50, count=words, max_tokens=10)
    _, context = fitted(build, roomy, conversation)
    assert context.result_limit == SHARED_RESULT_CHARS and len(context.history) == 8

    tight = Budget(context=100 + 2 * 40 + SHARED_RESULT_CHARS // 2 + 50, count=words, max_tokens=10)
    prompt, context = fitted(build, tight, conversation)
    assert context.result_limit == SHARED_RESULT_CHARS and 0 < len(context.history) < 8
    assert tight.fits(prompt)

    floor = Budget(context=100 + MIN_RESULT_CHARS // 2 + 20, count=words, max_tokens=10)
    prompt, context = fitted(build, floor, conversation)
    assert context.history == [] and context.result_limit == MIN_RESULT_CHARS
    assert floor.fits(prompt)


def test_a_turn_keeps_at_most_a_quarter_of_the_context_for_its_answer() -> None:
    assert Budget(context=4096, count=words, max_tokens=256).reserve == 256
    assert Budget(context=4096, count=words, max_tokens=10_000).reserve == 1024


def test_a_prompt_that_cannot_fit_is_left_to_the_backend_to_refuse() -> None:
    prompt, context = fitted(build, Budget(context=50, count=words, max_tokens=10), None)
    assert context.result_limit == MIN_RESULT_CHARS
    assert isinstance(prompt, str) and prompt.startswith("w " * 100)


class Options:
    """A scorer fake: each option's score by tool name, and every call's context recorded."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.contexts: list[str] = []

    async def __call__(
        self, prefix: str, options: Sequence[str], continuation: str, context: str
    ) -> list[float]:
        self.contexts.append(context)
        names = [option.removeprefix("Tool: ").removesuffix("\nRequest:") for option in options]
        return [self.scores.get(name, -100.0) for name in names]


def tools(*names: str) -> list[Tool]:
    return [make_tool(name, ToolParam("value", "", ParamType.STRING, True)) for name in names]


def test_the_router_reads_the_conversations_last_requests_as_its_latest_shots() -> None:
    scorer = Options({"echo": -1.0, "none": -9.0})
    earlier = [(None, "Good morning!"), ("echo", "Echo hi"), ("datetime", "What time is it in Tokyo?")]
    route = asyncio.run(routing.route(scorer, tools("echo"), "Echo bye", True, earlier))
    assert route.tool == "echo"
    # The last two, the one whose tool is not on offer as "none".
    assert scorer.contexts[0] == (
        "Tool: echo\nRequest: Echo hi\n\nTool: none\nRequest: What time is it in Tokyo?\n\n"
    )


@pytest.mark.parametrize(
    ("request_text", "tool"),
    [("Same for Paris", "datetime"), ("and divided by 4?", "datetime"), ("Thanks, bye", None)],
)
def test_an_elliptic_follow_up_takes_the_tool_of_the_request_before_it(
    request_text: str, tool: str | None
) -> None:
    scorer = Options({"datetime": -5.0, "echo": -6.0, "none": -4.0})
    earlier = [("datetime", "What time is it in Tokyo?")]
    route = asyncio.run(routing.route(scorer, tools("datetime", "echo"), request_text, True, earlier))
    assert route.tool == tool


async def test_a_file_name_copied_in_the_other_number_and_one_made_up_for_it_are_the_file_meant(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Turn 1 names groceries.txt and the model writes grocery.txt; turn 2 says "it" and the model
    makes up coffee.txt: both calls write groceries.txt."""
    params = (("path", "string", True), ("text", "string", True))
    (tmp_path / "write.wasm").write_bytes(tool_wasm("write", params=params))  # answers its path
    toolbox = Toolbox(WasmHost(cache_dir), [tmp_path])
    toolbox.load_all()
    model = ScriptedModel(
        [
            call("write", path="grocery.txt", text="apples, rice"),
            answer("Done."),
            call("write", path="coffee.txt", text="coffee"),
            answer("Added."),
        ]
    )
    models = ModelService(ModelSettings(), Path("."), model.loader())
    conversation = Conversation("c")
    try:
        for prompt in ["Create a file groceries.txt that says: apples, rice", "Now add coffee to it"]:
            result = await Agent(toolbox, models).run(
                AgentRequest(prompt), Recorder(), conversation=conversation
            )
            conversation.record(PastTurn(prompt, tuple(result.steps), result.answer, "answered"))
    finally:
        models.close()
        toolbox.close()
    calls = [(step.tool, step.arguments) for turn in conversation.turns for step in turn.steps]
    assert calls == [
        ("write", {"path": "groceries.txt", "text": "apples, rice"}),
        ("write", {"path": "groceries.txt", "text": "coffee"}),
    ]
