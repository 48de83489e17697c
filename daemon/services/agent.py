"""The agent loop: the model calls tools, sees their results, and decides, step by step."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from daemon.runtime.schema import ArgumentError
from daemon.services.model_service import ModelService
from daemon.services.prompting import (
    Exchange,
    FinalAnswer,
    TurnError,
    chat_messages,
    completion_prompt,
    parse_turn,
    turn_schema,
)
from daemon.services.toolbox import Tool, Toolbox, UnknownTool

StopReason = Literal["answer", "maxSteps", "maxTokens"]
PromptFormat = Literal["completion", "chatTemplate"]


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    tools: tuple[str, ...] | None = None  # None: every loaded tool
    max_steps: int = 5  # tool calls; then the model must answer
    max_tokens: int = 256  # per model turn
    temperature: float = 0.0
    seed: int | None = None  # None: the model's configured seed


@dataclass(frozen=True)
class AgentStep:
    tool: str
    arguments: dict[str, Any]
    result: str
    is_error: bool


@dataclass
class AgentResult:
    answer: str
    steps: list[AgentStep] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: StopReason = "answer"
    prompt_format: PromptFormat = "completion"


class AgentEvents(Protocol):
    """Progress of a run, called on the event loop."""

    def on_text(self, text: str) -> None: ...

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None: ...

    def on_tool_result(self, index: int, step: AgentStep) -> None: ...


class Agent:
    def __init__(self, toolbox: Toolbox, models: ModelService) -> None:
        self.toolbox = toolbox
        self.models = models

    def select_tools(self, names: Sequence[str] | None) -> list[Tool]:
        available = self.toolbox.snapshot.tools
        if names is None:
            return [available[name] for name in sorted(available)]
        missing = [name for name in names if name not in available]
        if missing:
            raise UnknownTool(missing[0], available)
        return [available[name] for name in dict.fromkeys(names)]

    async def run(self, request: AgentRequest, events: AgentEvents) -> AgentResult:
        """Raises ModelError (no model), UnknownTool (bad `tools`); cancellable."""
        await self.toolbox.ready()
        tools = self.select_tools(request.tools)
        model = await self.models.model()
        cancel = threading.Event()
        result = AgentResult(
            answer="", prompt_format="completion" if model.chat_template is None else "chatTemplate"
        )
        transcript: list[Exchange] = []
        async with self.models.exclusive():
            while True:
                may_call = len(result.steps) < request.max_steps
                offered = tools if may_call else []
                if result.prompt_format == "completion":
                    prompt = completion_prompt(offered, request.prompt, transcript)
                else:
                    prompt = model.format_chat(chat_messages(offered, request.prompt, transcript))
                generation = await self.models.generate(
                    model,
                    events.on_text,
                    cancel,
                    prompt=prompt,
                    schema=turn_schema(offered),
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    seed=self.models.settings.seed if request.seed is None else request.seed,
                )
                result.prompt_tokens += generation.prompt_tokens
                result.completion_tokens += generation.completion_tokens
                turn_text = generation.text.strip()
                if generation.stop_reason == "length":
                    result.answer, result.stop_reason = turn_text, "maxTokens"
                    return result
                try:
                    turn = parse_turn(turn_text)
                except TurnError:
                    result.answer, result.stop_reason = turn_text, "maxTokens"
                    return result
                if isinstance(turn, FinalAnswer):
                    result.answer = turn.text
                    result.stop_reason = "answer" if may_call else "maxSteps"
                    return result
                index = len(result.steps)
                events.on_tool_call(index, turn.tool, turn.arguments)
                step = await self._call(turn.tool, turn.arguments)
                result.steps.append(step)
                events.on_tool_result(index, step)
                transcript.append(Exchange(turn_text, step.result, step.is_error))

    async def _call(self, tool: str, arguments: dict[str, Any]) -> AgentStep:
        """Run a tool call; every failure becomes an observation for the model."""
        try:
            called = await self.toolbox.invoke(tool, arguments)
        except (UnknownTool, ArgumentError) as error:
            # The grammar should make this impossible; validate anyway.
            return AgentStep(tool, arguments, str(error), True)
        return AgentStep(tool, arguments, "\n".join(called.texts()), called.invocation.is_error)
