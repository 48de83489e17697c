"""OpenTelemetry traces: a span per agent run (`agent.run`), per model turn (`agent.turn`) and per
tool call (`tool.call`), exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

The daemon keeps a tracer of its own rather than OpenTelemetry's global one, so that a test can
hand it a provider with an in-memory exporter (`use_tracer_provider`) and the next test another.
Without one, `span` returns a shared do-nothing context: no span, no context switch, no allocation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import INVALID_SPAN, Span, Tracer
from opentelemetry.util.types import AttributeValue

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_NO_SPAN: AbstractContextManager[Span] = contextlib.nullcontext(INVALID_SPAN)
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def configure_tracing(service_name: str = "llama-agent", environ: Mapping[str, str] = os.environ) -> bool:
    """Export spans over OTLP/HTTP if the environment names an endpoint (the exporter reads the
    standard OTEL_EXPORTER_OTLP_* variables: endpoint, headers, timeout); else trace nothing.
    Whether spans are exported."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        use_tracer_provider(None)
        return False
    # Imported only when asked for: it brings protobuf and requests with it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # OTEL_SERVICE_NAME, when set, names the service instead (the resource detector reads it).
    named = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_tracer_provider(provider)
    return True


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace into `provider` from now on (None: trace nothing); the previous one is flushed and
    shut down if it was configured here."""
    global _tracer, _provider
    previous, _provider = _provider, provider
    _tracer = provider.get_tracer("llama_agent") if provider is not None else None
    if previous is not None and previous is not provider:
        previous.shutdown()


def tracer() -> Tracer | None:
    """The tracer spans go to; None when tracing is off."""
    return _tracer


def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> AbstractContextManager[Span]:
    """A span made current for the `with` block (a do-nothing one when tracing is off)."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def flush_traces(timeout_seconds: float = 2.0) -> None:
    """Export what is buffered (before the process ends without running its exit handlers)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))
