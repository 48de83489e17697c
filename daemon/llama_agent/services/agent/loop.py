"""The agent loop: the model calls tools, sees their results, and decides, step by step."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal, Protocol

from llama_agent.common.errors import InvalidParams
from llama_agent.runtime.models.backend import (
    AnyBackend,
    CandidateScorer,
    ChatBackend,
    ChatMessage,
    Generation,
    LikelihoodScorer,
    ModelIdentity,
    Turn,
)
from llama_agent.runtime.telemetry.runs import observed_run, turn_generated, turn_started
from llama_agent.runtime.tools.schema import ArgumentError
from llama_agent.services.agent import routing
from llama_agent.services.agent.budget import Budget, estimated_tokens, fitted
from llama_agent.services.agent.follow_ups import said_in_full
from llama_agent.services.agent.grounding import ground_arguments, said_in_run
from llama_agent.services.agent.history import AgentStep, Conversation, PastTurn
from llama_agent.services.agent.prompting import (
    Exchange,
    FinalAnswer,
    PromptContext,
    ToolCall,
    TurnError,
    call_text,
    chat_messages,
    completion_prefix,
    completion_prompt,
    completion_start,
    parse_turn,
    turn_schema,
)
from llama_agent.services.agent.routing import Route
from llama_agent.services.agent.snapping import recent_paths, snap_arguments
from llama_agent.services.agent.tool_selection import relevant_tools
from llama_agent.services.agent.turns import RunawayGuard, partial_answer
from llama_agent.services.models import ModelService
from llama_agent.services.tools.registry import CallResult, Tool, Toolbox, UnknownTool

log = logging.getLogger(__name__)

# answer: the model answered. maxSteps: it answered after the step budget ran out. maxTokens: a
# turn was cut at maxTokens. repetition: a turn ran away repeating itself and was cut.
# invalidTurn: a turn that is neither a call nor an answer (the grammar should prevent it).
StopReason = Literal["answer", "maxSteps", "maxTokens", "repetition", "invalidTurn"]
# completion: a base model's text prompt; chatTemplate: the GGUF's template applied here; chat: a
# server sent the messages (it applies the template).
PromptFormat = Literal["completion", "chatTemplate", "chat"]
# Besides these, a tool choice may be a tool's name: the first turn must call that tool.
TOOL_CHOICES = ("auto", "required", "none")


class InvalidRequest(InvalidParams, ValueError):
    """A request that cannot run as asked; `field` names the part at fault."""


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
    focus: Tool | None = None  # the tool whose examples the prompt shows (routed or forced)
    after: Tool | None = None  # a planned call's previous tool: its result feeds this call
    planned: bool = False  # the router's plan, not the request, chose the one callable tool


@dataclass
class RunTimings:
    """Where a run's time went, in seconds; tool calls are the rest."""

    started: float = field(default_factory=time.perf_counter)  # when the request arrived
    first_token: float | None = None  # from the request to the first generated token
    routing: float = 0.0  # the router scoring the request against the tools
    prompt: float = 0.0  # turns' prompts evaluated (or restored), up to each first token
    generation: float = 0.0  # turns' tokens after their first

    def add(self, turn: Generation, turn_started: float) -> None:
        """Count a turn that started at `turn_started` (a `time.perf_counter()`)."""
        if self.first_token is None and turn.completion_tokens:
            self.first_token = turn_started - self.started + turn.first_token_seconds
        self.prompt += turn.first_token_seconds
        self.generation += turn.seconds - turn.first_token_seconds


@dataclass
class AgentResult:
    answer: str
    steps: list[AgentStep] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens reused rather than evaluated
    stop_reason: StopReason = "answer"
    prompt_format: PromptFormat = "completion"
    timings: RunTimings = field(default_factory=RunTimings)
    model: ModelIdentity | None = None  # which backend and model answered
    history_turns: int = 0  # the conversation's earlier turns the last turn's prompt showed


class ToolCalls(Protocol):
    """Makes a run's tool calls: the toolbox itself, or a session (services/sessions.py), which
    grants its workspace and asks the person about calls that may write."""

    async def invoke(self, name: str, arguments: dict[str, Any]) -> CallResult: ...


class AgentEvents(Protocol):
    """Progress of a run, called on the event loop."""

    def on_turn_start(self, index: int) -> None: ...

    def on_text(self, text: str) -> None: ...

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None: ...

    def on_tool_result(self, index: int, step: AgentStep) -> None: ...


class Agent:
    """Runs requests with `toolbox`'s tools and `models`' model; its runs wait for the model as
    `party`'s (a tenant's: runs of different parties take turns, services/tenants/fair.py)."""

    def __init__(self, toolbox: Toolbox, models: ModelService, party: str = "") -> None:
        self.toolbox = toolbox
        self.models = models
        self.party = party

    def select_tools(self, names: Sequence[str] | None) -> list[Tool]:
        available = self.toolbox.snapshot.tools
        if names is None:
            return [available[name] for name in sorted(available)]
        missing = [name for name in names if name not in available]
        if missing:
            raise UnknownTool(missing[0], available)
        return [available[name] for name in dict.fromkeys(names)]

    @observed_run  # the run's span, its turns' spans, and the run, turn and token metrics
    async def run(
        self,
        request: AgentRequest,
        events: AgentEvents,
        calls: ToolCalls | None = None,
        conversation: Conversation | None = None,
        on_tokens: Callable[[int], None] | None = None,
    ) -> AgentResult:
        """Raises ModelError (no model), UnknownTool (bad `tools`), InvalidRequest; cancellable.
        `calls` makes the tool calls (default: the toolbox, with each tool's own grants). In a
        `conversation`, the run sees its earlier turns (the caller records this one). `on_tokens`
        hears each turn's prompt and completion tokens as it ends, so a run that fails or is
        cancelled later has counted them."""
        started = time.perf_counter()
        await self.toolbox.ready()
        tools = self.select_tools(request.tools)
        check_tool_choice(request.tool_choice, tools)
        forced = [] if request.tool_choice in TOOL_CHOICES else [request.tool_choice]
        earlier = conversation.shown() if conversation is not None else []
        # "and divided by 4?": the number it goes on from put in (follow_ups.py).
        request = replace(request, prompt=said_in_full(request.prompt, earlier))
        about = " ".join([*(turn.request for turn in earlier[-1:]), request.prompt])
        tools = relevant_tools(tools, about, keep=forced)
        model = await self.models.model()
        result = AgentResult(
            answer="",
            prompt_format=prompt_format(model),
            timings=RunTimings(started=started),
            model=model.identity,
        )
        run = _Run(request, conversation, self._budget(model, request), on_tokens, tools)
        repeated: set[str] = set()  # tools called again with the same arguments: not offered again
        async with self.models.exclusive(model, self.party):
            routing_started = time.perf_counter()
            route = await self._route(model, request, tools, earlier)
            result.timings.routing = time.perf_counter() - routing_started
            for turn_index in itertools.count():
                failed = bool(result.steps) and result.steps[-1].is_error
                options = turn_options(request, tools, len(result.steps), frozenset(repeated), route, failed)
                events.on_turn_start(turn_index)
                turn_started(turn_index)
                turn_text, cut = await self._turn(model, run, options, result, events)
                if cut == "repetition" and options.planned:
                    # A planned call that runs away is often the plan's mistake: the model decides
                    # the turn again, with every tool and the answer open to it. (One cut at
                    # maxTokens is not retried: that budget is the client's.)
                    log.debug("a planned call to %s ran away; the model chooses", options.callable[0].name)
                    route = None
                    continue
                if cut is not None:
                    return _cut_short(result, turn_text, cut)
                try:
                    turn = parse_turn(turn_text)
                except TurnError:
                    return _cut_short(result, turn_text, "invalidTurn")
                if isinstance(turn, FinalAnswer):
                    return _answered(result, request, turn.text)
                step, repeat = await self._step(run, turn, result.steps, events, calls or self.toolbox)
                if repeat:
                    repeated.add(turn.tool)
                result.steps.append(step)
                events.on_tool_result(len(result.steps) - 1, step)
                # The transcript shows the call as made, so that the model's next turns build on it.
                made = turn_text if step.arguments == turn.arguments else call_text(turn.tool, step.arguments)
                run.transcript.append(Exchange(made, step.result, step.is_error))
        raise AssertionError("unreachable")

    def _budget(self, model: AnyBackend, request: AgentRequest) -> Budget:
        if isinstance(model, ChatBackend):  # its tokenizer is on the server: estimated
            return Budget(self.models.settings.context_size, estimated_tokens, request.max_tokens)
        return Budget(model.context_size, model.count_tokens, request.max_tokens)

    async def _turn(
        self,
        model: AnyBackend,
        run: _Run,
        options: TurnOptions,
        result: AgentResult,
        events: AgentEvents,
    ) -> tuple[str, StopReason | None]:
        """One model turn: its text, and why it was cut short (None: it ended by itself). A turn
        that ran away is cut at the end of its first copy."""
        request = run.request
        guard = RunawayGuard()
        turn_started = time.perf_counter()
        prompt, shown = fitted(
            partial(self._prompt, model, result.prompt_format, options, request.prompt, run.transcript),
            run.budget,
            run.conversation,
        )
        result.history_turns = len(shown.history)
        turn = Turn(
            prompt=prompt,
            schema=turn_schema(options.callable, allow_answer=options.may_answer),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            seed=self.models.settings.seed if request.seed is None else request.seed,
            cache_prefixes=(
                completion_prefix(options.described, options.focus),
                completion_start(options.described, request.prompt, options.focus, options.after),
            )
            if result.prompt_format == "completion"
            else (),
            on_text=events.on_text,
            stop_when=guard.feed,
        )
        generation = await self.models.generate(model, turn)
        result.prompt_tokens += generation.prompt_tokens
        result.completion_tokens += generation.completion_tokens
        result.cached_prompt_tokens += generation.cached_tokens
        turn_generated(generation.prompt_tokens, generation.completion_tokens)
        if run.on_tokens is not None:
            run.on_tokens(generation.prompt_tokens + generation.completion_tokens)
        result.timings.add(generation, turn_started)
        if guard.cut_at is not None:
            return guard.text[: guard.cut_at], "repetition"
        return generation.text.strip(), "maxTokens" if generation.stop_reason == "length" else None

    async def _step(
        self,
        run: _Run,
        turn: ToolCall,
        steps: list[AgentStep],
        events: AgentEvents,
        calls: ToolCalls,
    ) -> tuple[AgentStep, bool]:
        """Make the turn's call (its near-copied file names snapped first: from the request, this
        run's results, or the conversation's; a made-up path of a request that refers back, to the
        last one used; then its values held to what was said, grounding.py), once `events` were
        told of it, or refuse it as a repeat of an earlier one (True)."""
        sources = [run.request.prompt, *(step.result for step in steps), *run.earlier_texts()]
        recent = recent_paths(steps, run.earlier_turns())
        snapped = snap_arguments(turn.arguments, sources, run.request.prompt, recent)
        said = said_in_run(run.request.prompt, steps, run.earlier_turns())
        arguments = ground_arguments(turn.tool, snapped, run.schema(turn.tool), said)
        if arguments != turn.arguments:
            log.debug("arguments snapped and grounded: %s -> %s", turn.arguments, arguments)
        events.on_tool_call(len(steps), turn.tool, arguments)
        earlier = _same_call(steps, turn.tool, arguments)
        if earlier:
            return _repeat_refused(earlier), True
        return await self._call(turn.tool, arguments, calls), False

    async def _route(
        self, model: AnyBackend, request: AgentRequest, tools: list[Tool], earlier: Sequence[PastTurn]
    ) -> Route | None:
        """The router's plan, when the backend can score and the request leaves the choice to
        the model; None: the model chooses in its turns. The conversation's last requests, with
        the tools they took, are its most recent examples: "same for Paris" after a time zone
        question reads as one."""
        if not isinstance(model, LikelihoodScorer) or request.tool_choice not in ("auto", "required"):
            return None
        allow_none = request.tool_choice == "auto"
        if len(tools) + allow_none < 2:
            return None
        score = partial(self.models.log_likelihoods, model)
        classify = (
            partial(self.models.candidate_likelihoods, model) if isinstance(model, CandidateScorer) else None
        )
        try:
            seen = [(turn.first_tool, turn.request) for turn in earlier]
            route = await routing.route(score, tools, request.prompt, allow_none, seen, classify)
        except (ValueError, RuntimeError) as error:
            log.warning("routing skipped, the model chooses in its turn: %s", error)
            return None
        log.debug("routed to %s (plan %s): %s", route.tool or routing.NO_TOOL, route.steps, route.scores)
        return route

    @staticmethod
    def _prompt(
        model: AnyBackend,
        prompt_format: PromptFormat,
        options: TurnOptions,
        user_prompt: str,
        transcript: list[Exchange],
        context: PromptContext,
    ) -> str | list[ChatMessage]:
        described, focus, after = options.described, options.focus, options.after
        if prompt_format == "completion":
            return completion_prompt(described, user_prompt, transcript, focus, after, context)
        messages = chat_messages(described, user_prompt, transcript, focus, after, context)
        if isinstance(model, ChatBackend):
            return messages
        return model.format_chat(messages)

    async def _call(self, tool: str, arguments: dict[str, Any], calls: ToolCalls) -> AgentStep:
        """Run a tool call; every failure (a call the person declined too) becomes an observation
        for the model."""
        try:
            called = await calls.invoke(tool, arguments)
        except (UnknownTool, ArgumentError) as error:
            # The grammar should make this impossible; validate anyway.
            return AgentStep(tool, arguments, str(error), True)
        return AgentStep(tool, arguments, "\n".join(called.texts()), called.invocation.is_error)


@dataclass
class _Run:
    """One run's own state: the request, the conversation it continues, its calls so far."""

    request: AgentRequest
    conversation: Conversation | None
    budget: Budget
    on_tokens: Callable[[int], None] | None = None
    tools: Sequence[Tool] = ()  # those on offer
    transcript: list[Exchange] = field(default_factory=list)

    def schema(self, tool: str) -> dict[str, Any]:
        """The input schema of the offered tool named `tool` (empty if none is: validation says so)."""
        return next((offered.input_schema for offered in self.tools if offered.name == tool), {})

    def earlier_turns(self) -> list[PastTurn]:
        """The conversation's turns that prompts show, oldest first."""
        return self.conversation.shown() if self.conversation is not None else []

    def earlier_texts(self) -> list[str]:
        """The conversation's requests and results that prompts show: what a call may copy."""
        turns = self.earlier_turns()
        return [text for turn in turns for text in (turn.request, *(step.result for step in turn.steps))]


def prompt_format(model: AnyBackend) -> PromptFormat:
    if isinstance(model, ChatBackend):
        return "chat"
    return "completion" if model.chat_template is None else "chatTemplate"


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


# After this many calls refused as repeats, the model may only answer: it is going round in circles.
MAX_REPEATS = 2


def turn_options(
    request: AgentRequest,
    tools: list[Tool],
    steps_taken: int,
    repeated: frozenset[str] = frozenset(),
    route: Route | None = None,
    last_failed: bool = False,
) -> TurnOptions:
    """The prompt keeps describing every offered tool while calls are allowed, so the
    model's cached prefix stays valid; forcing a call, following the router's plan, or ruling
    out the tools whose calls were repeats, narrows only the grammar. A failed call ends the
    plan: what was planned after it may no longer make sense."""
    if request.tool_choice == "none" or steps_taken >= request.max_steps:
        return TurnOptions(described=[], callable=[], may_answer=True)
    focus = _focus(request, tools, route, steps_taken - 1 if last_failed else steps_taken)
    if repeated:
        others = [] if len(repeated) >= MAX_REPEATS else [t for t in tools if t.name not in repeated]
        return TurnOptions(described=tools, callable=others, may_answer=True, focus=focus)
    planned = None if route is None or last_failed else _named(tools, route.planned(steps_taken))
    if planned is not None:
        after = _named(tools, route.planned(steps_taken - 1)) if route and steps_taken else None
        return TurnOptions(
            described=tools, callable=[planned], may_answer=False, focus=planned, after=after, planned=True
        )
    if steps_taken > 0 or (request.tool_choice == "auto" and route is None):
        return TurnOptions(described=tools, callable=tools, may_answer=True, focus=focus)
    if route is not None:
        return TurnOptions(described=[], callable=[], may_answer=True)  # routed to no tool
    if request.tool_choice == "required":
        return TurnOptions(described=tools, callable=tools, may_answer=False)
    assert focus is not None
    return TurnOptions(described=tools, callable=[focus], may_answer=False, focus=focus)


def _focus(request: AgentRequest, tools: list[Tool], route: Route | None, step: int) -> Tool | None:
    """The tool the request forces, or else the one the router's plan centres this step on."""
    if request.tool_choice not in TOOL_CHOICES:
        return _named(tools, request.tool_choice)
    return _named(tools, route.focus(max(step, 0))) if route else None


def _named(tools: list[Tool], name: str | None) -> Tool | None:
    return next((tool for tool in tools if tool.name == name), None)


def _same_call(steps: Sequence[AgentStep], tool: str, arguments: dict[str, Any]) -> AgentStep | None:
    """The earlier step that made exactly this call, if any."""
    return next((step for step in steps if step.tool == tool and step.arguments == arguments), None)


def _repeat_refused(earlier: AgentStep) -> AgentStep:
    """A repeated call is not run again: its result would be the same, and a small model that
    repeats a call tends to repeat it until the step budget runs out."""
    note = (
        f"not run again: {earlier.tool} was already called with these arguments. "
        "Answer with its result, or call another tool."
    )
    return AgentStep(earlier.tool, earlier.arguments, note, True)


def _answered(result: AgentResult, request: AgentRequest, answer: str) -> AgentResult:
    result.answer = answer
    budget_spent = request.tool_choice != "none" and len(result.steps) >= request.max_steps
    result.stop_reason = "maxSteps" if budget_spent else "answer"
    return result


def _cut_short(result: AgentResult, turn_text: str, reason: StopReason) -> AgentResult:
    """A turn that did not end by itself: keep what was said of an answer, never raw JSON."""
    result.answer = (partial_answer(turn_text) or "").strip()
    result.stop_reason = reason
    return result
