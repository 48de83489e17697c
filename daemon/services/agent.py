"""The agent loop: the model calls tools, sees their results, and decides, step by step."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from daemon.runtime.backend import ModelBackend
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
# Besides these, a tool choice may be a tool's name: the first turn must call that tool.
TOOL_CHOICES = ("auto", "required", "none")


class InvalidRequest(ValueError):
    """A request that cannot run as asked; `field` names the part at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AgentRequest:
    prompt: str
    tools: tuple[str, ...] | None = None  # None: every loaded tool
    max_steps: int = 5  # tool calls; then the model must answer
    max_tokens: int = 256  # per model turn
    temperature: float = 0.0
    seed: int | None = None  # None: the model's configured seed
    # "auto": call tools or answer; "required": the first turn calls a tool; "none": answer
    # without tools; a tool name: the first turn calls that tool.
    tool_choice: str = "auto"


@dataclass(frozen=True)
class TurnOptions:
    """What one turn may do: the tools its prompt describes, those it may call, and answering."""

    described: list[Tool]
    callable: list[Tool]
    may_answer: bool


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
        """Raises ModelError (no model), UnknownTool (bad `tools`), InvalidRequest; cancellable."""
        await self.toolbox.ready()
        tools = self.select_tools(request.tools)
        check_tool_choice(request.tool_choice, tools)
        model = await self.models.model()
        cancel = threading.Event()
        result = AgentResult(
            answer="", prompt_format="completion" if model.chat_template is None else "chatTemplate"
        )
        transcript: list[Exchange] = []
        async with self.models.exclusive():
            while True:
                options = turn_options(request, tools, len(result.steps))
                generation = await self.models.generate(
                    model,
                    events.on_text,
                    cancel,
                    prompt=self._prompt(model, result.prompt_format, options, request.prompt, transcript),
                    schema=turn_schema(options.callable, allow_answer=options.may_answer),
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
                    budget_spent = request.tool_choice != "none" and len(result.steps) >= request.max_steps
                    result.stop_reason = "maxSteps" if budget_spent else "answer"
                    return result
                index = len(result.steps)
                events.on_tool_call(index, turn.tool, turn.arguments)
                step = await self._call(turn.tool, turn.arguments)
                result.steps.append(step)
                events.on_tool_result(index, step)
                transcript.append(Exchange(turn_text, step.result, step.is_error))

    @staticmethod
    def _prompt(
        model: ModelBackend,
        prompt_format: PromptFormat,
        options: TurnOptions,
        user_prompt: str,
        transcript: list[Exchange],
    ) -> str:
        if prompt_format == "completion":
            return completion_prompt(options.described, user_prompt, transcript)
        return model.format_chat(chat_messages(options.described, user_prompt, transcript))

    async def _call(self, tool: str, arguments: dict[str, Any]) -> AgentStep:
        """Run a tool call; every failure becomes an observation for the model."""
        try:
            called = await self.toolbox.invoke(tool, arguments)
        except (UnknownTool, ArgumentError) as error:
            # The grammar should make this impossible; validate anyway.
            return AgentStep(tool, arguments, str(error), True)
        return AgentStep(tool, arguments, "\n".join(called.texts()), called.invocation.is_error)


def check_tool_choice(choice: str, tools: Sequence[Tool]) -> None:
    if choice in TOOL_CHOICES:
        if choice == "required" and not tools:
            raise InvalidRequest("toolChoice 'required' needs at least one tool on offer", "toolChoice")
        return
    if choice not in {tool.name for tool in tools}:
        offered = ", ".join(tool.name for tool in tools) or "none"
        raise InvalidRequest(
            f"toolChoice must be auto, required, none or an offered tool; {choice!r} is not offered "
            f"(offered: {offered})",
            "toolChoice",
        )


def turn_options(request: AgentRequest, tools: list[Tool], steps_taken: int) -> TurnOptions:
    """The prompt keeps describing every offered tool while calls are allowed, so the
    model's cached prefix stays valid; forcing a call narrows only the grammar."""
    if request.tool_choice == "none" or steps_taken >= request.max_steps:
        return TurnOptions(described=[], callable=[], may_answer=True)
    if steps_taken > 0 or request.tool_choice == "auto":
        return TurnOptions(described=tools, callable=tools, may_answer=True)
    if request.tool_choice == "required":
        return TurnOptions(described=tools, callable=tools, may_answer=False)
    forced = [tool for tool in tools if tool.name == request.tool_choice]
    return TurnOptions(described=tools, callable=forced, may_answer=False)
