"""An agent run observed: its `agent.run` span with a child `agent.turn` span per model turn, and
the run, turn and token metrics.

The agent's `run` method is decorated `@observed_run` (or a caller wraps a run in `with
observe_run() as run:` and says how it ended, `run.finished(...)`). Inside, the loop says when a
turn starts (`turn_started`) and what its generation counted (`turn_generated`), found through a
context variable, so the loop passes nothing along. A turn's span stays current until the next
turn starts: the tool call the turn asked for is its child (run → turn → call).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sized
from contextvars import ContextVar, Token
from types import TracebackType
from typing import ParamSpec, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode, set_span_in_context

from llama_agent.runtime.telemetry import metrics, tracing
from llama_agent.runtime.telemetry.context import current_tenant, session_id


class RunResult(Protocol):
    """What is read from a run's result (services/agent's `AgentResult` has it)."""

    @property
    def stop_reason(self) -> str: ...

    @property
    def steps(self) -> Sized: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...


Params = ParamSpec("Params")
Result = TypeVar("Result", bound=RunResult)
_current: ContextVar[RunObservation | None] = ContextVar("llama_agent_run", default=None)


class RunObservation:
    """One run's span and metrics, from `with` to its end (an exception counts as cancelled or
    failed)."""

    def __init__(self) -> None:
        self._span: Span = INVALID_SPAN
        self._turn: Span = INVALID_SPAN
        self._attached: Token[Context] | None = None  # the run's span made current
        self._turn_attached: Token[Context] | None = None
        self._outcome = "failed"
        self._current: Token[RunObservation | None] | None = None

    def __enter__(self) -> RunObservation:
        metrics.run_started()
        tracer = tracing.tracer()
        if tracer is not None:
            attributes = {"tenant": current_tenant(), "session": session_id.get() or ""}
            self._span = tracer.start_span("agent.run", attributes=attributes)
            self._attached = otel_context.attach(set_span_in_context(self._span))
        self._current = _current.set(self)
        return self

    def turn(self, index: int) -> None:
        metrics.turn_started()
        self._end_turn()
        tracer = tracing.tracer()
        if tracer is not None and self._span.is_recording():
            self._turn = tracer.start_span("agent.turn", attributes={"index": index})
            self._turn_attached = otel_context.attach(set_span_in_context(self._turn))

    def generated(self, prompt_tokens: int, completion_tokens: int) -> None:
        metrics.turn_tokens(prompt_tokens, completion_tokens)
        if self._turn.is_recording():
            figures = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
            self._turn.set_attributes(figures)

    def finished(self, stop_reason: str, steps: int, prompt_tokens: int, completion_tokens: int) -> None:
        """The run ended by itself, with its result's figures."""
        self._outcome = stop_reason
        if self._span.is_recording():
            self._span.set_attributes(
                {
                    "stop_reason": stop_reason,
                    "steps": steps,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                }
            )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            self._outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
            if self._span.is_recording():
                self._span.set_attribute("stop_reason", self._outcome)
                if self._outcome == "failed":
                    self._span.record_exception(error)
                    self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._end_turn()
        if self._current is not None:
            _current.reset(self._current)
        if self._attached is not None:
            otel_context.detach(self._attached)
        self._span.end()
        metrics.run_ended(self._outcome)

    def _end_turn(self) -> None:
        if self._turn_attached is not None:
            otel_context.detach(self._turn_attached)
            self._turn_attached = None
        self._turn.end()
        self._turn = INVALID_SPAN


def observe_run() -> RunObservation:
    """`with observe_run() as run:` around an agent run; `run.finished(...)` once it has a result."""
    return RunObservation()


def observed_run(run: Callable[Params, Awaitable[Result]]) -> Callable[Params, Awaitable[Result]]:
    """Decorates an agent's `run`: each call observed from start to end, as `observe_run` does."""

    @functools.wraps(run)
    async def observed(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        with RunObservation() as observation:
            result = await run(*args, **kwargs)
            steps = len(result.steps)
            observation.finished(result.stop_reason, steps, result.prompt_tokens, result.completion_tokens)
            return result

    return observed


def turn_started(index: int) -> None:
    """The current run's turn `index` starts (the previous one, with its call, has ended)."""
    run = _current.get()
    if run is not None:
        run.turn(index)


def turn_generated(prompt_tokens: int, completion_tokens: int) -> None:
    """The current turn's generation took `prompt_tokens` and produced `completion_tokens`."""
    run = _current.get()
    if run is not None:
        run.generated(prompt_tokens, completion_tokens)
    else:
        metrics.turn_tokens(prompt_tokens, completion_tokens)
