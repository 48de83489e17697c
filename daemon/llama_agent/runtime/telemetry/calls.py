"""A tool call observed: its `tool.call` span with the sandbox's figures, the call metrics, and an
audit record when the call could write.

The toolbox wraps each call it runs: `with observe_call(name, grants.dirs) as call:` around the
call, `call.done(invocation)` with what came back. A call refused before it ran (no consent, a
workspace that cannot be granted) is `refused_call(name, kind)`.

The figures read from a call's result: `is_error`, `timed_out`, `duration_ms` (every result has
them), and, when the result carries them (a call that ran in a worker), `peak_memory_bytes`,
`bytes_written` and `confinement`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from os import PathLike
from types import TracebackType
from typing import Protocol

from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

from llama_agent.runtime.telemetry import audit, metrics, tracing
from llama_agent.runtime.telemetry.context import current_tenant, session_id

# Figures a call's result may carry beyond the ones every result has, as span attributes.
OPTIONAL_FIGURES = ("peak_memory_bytes", "bytes_written")


class CallResult(Protocol):
    """What is read from every call's result (runtime/wasm's `Invocation` has it)."""

    @property
    def is_error(self) -> bool: ...

    @property
    def timed_out(self) -> bool: ...

    @property
    def duration_ms(self) -> float: ...


class GrantedDir(Protocol):
    """A directory granted to a call (runtime/tools' `DirGrant` is one)."""

    @property
    def host(self) -> PathLike[str]: ...

    @property
    def mode(self) -> str: ...


class CallObservation:
    """One call, from `with` to its end: an exception counts as cancelled or failed."""

    def __init__(self, tool: str, dirs: Sequence[GrantedDir]) -> None:
        self._tool = tool
        self._dirs = dirs
        self._result: CallResult | None = None
        self._span: Span = INVALID_SPAN
        self._started = 0.0

    def __enter__(self) -> CallObservation:
        self._started = time.perf_counter()
        tracer = tracing.tracer()
        if tracer is not None:
            self._span = tracer.start_span("tool.call", attributes={"tool.name": self._tool})
        return self

    def done(self, result: CallResult) -> None:
        self._result = result

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        result = self._result
        if error is not None or result is None:
            outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
            seconds = time.perf_counter() - self._started
        else:
            outcome = "timeout" if result.timed_out else "error" if result.is_error else "ok"
            seconds = result.duration_ms / 1000
        metrics.tool_call(self._tool, outcome, seconds)
        if self._span.is_recording():
            _describe(self._span, outcome, seconds, result, error)
        self._span.end()
        writable = [str(d.host) for d in self._dirs if d.mode == "rw"] if audit.auditing() else []
        if writable:
            figures = {name: getattr(result, name) for name in OPTIONAL_FIGURES if hasattr(result, name)}
            audit.record("call", tool=self._tool, writable=writable, outcome=outcome, **figures)


def _describe(
    span: Span, outcome: str, seconds: float, result: CallResult | None, error: BaseException | None
) -> None:
    span.set_attributes(
        {"tool.outcome": outcome, "sandbox.duration_ms": seconds * 1000, "tenant": current_tenant()}
    )
    if (session := session_id.get()) is not None:
        span.set_attribute("session", session)
    for name in OPTIONAL_FIGURES:
        value = getattr(result, name, None)
        if isinstance(value, int | float):
            span.set_attribute(f"sandbox.{name}", value)
    confinement = getattr(result, "confinement", None)  # how the OS confined its worker
    if isinstance(confinement, str) and confinement:
        span.set_attribute("sandbox.confinement", confinement)
    if outcome in ("error", "timeout", "failed"):
        span.set_status(Status(StatusCode.ERROR, outcome))
    if outcome == "failed" and error is not None:
        span.record_exception(error)


def observe_call(tool: str, dirs: Sequence[GrantedDir] = ()) -> CallObservation:
    """`with observe_call(name, grants.dirs) as call:` around a tool call; `call.done(result)`."""
    return CallObservation(tool, dirs)


def refused_call(tool: str, kind: str) -> None:
    """A call refused before it ran: `kind` says by what (metrics.REFUSAL_KINDS: consent, grant…)."""
    metrics.sandbox_refusal(kind)
    metrics.tool_call(tool, "refused", None)
    tracer = tracing.tracer()
    if tracer is not None:
        attributes = {"tool.name": tool, "tool.outcome": "refused", "refusal": kind}
        tracer.start_span("tool.call", attributes={**attributes, "tenant": current_tenant()}).end()
