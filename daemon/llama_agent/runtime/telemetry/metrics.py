"""The daemon's Prometheus metrics, in a registry of their own (not the client library's global
one, so that tests and several services in one process never mix their figures).

Callers record with one line each, through the functions below; none of them ever takes a label
from what a client sent as it is: a method name is one of the known methods (else "other"), a
tenant or a tool name must look like one and there may only be so many of them (beyond that,
"other"), an outcome or a kind is one of a fixed few. So a hostile client cannot grow the scrape.
The tenant is the current context's (telemetry/context.py) unless given.

Every metric is listed, with its labels and meaning, in docs/service.md ("Observability").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from llama_agent.runtime.telemetry.context import LOCAL, current_tenant

REGISTRY = CollectorRegistry(auto_describe=True)
OTHER = "other"

# -- label values, bounded -------------------------------------------------------------------------

# The methods of every face (LSP-style JSON-RPC, MCP, ACP); a face may add its own (`known_methods`).
KNOWN_METHODS = frozenset(
    {
        "initialize", "initialized", "shutdown", "exit", "$/cancelRequest", "$/setTrace",
        "tools/list", "tools/invoke", "tools/call",
        "agent/run", "agent/newSession", "agent/forget", "agent/history",
        "ping", "notifications/initialized", "notifications/cancelled",
        "session/new", "session/load", "session/list", "session/prompt", "session/cancel",
        "session/set_mode", "authenticate",
    }
)  # fmt: skip
REQUEST_OUTCOMES = frozenset({"ok", "error", "cancelled", "refused", "unauthorized", "quota", "timeout"})
RUN_OUTCOMES = frozenset(
    {"answer", "maxSteps", "maxTokens", "repetition", "invalidTurn", "cancelled", "failed"}
)
CALL_OUTCOMES = frozenset({"ok", "error", "timeout", "cancelled", "refused", "failed"})
REFUSAL_KINDS = frozenset({"consent", "grant", "quota"})
RESTART_REASONS = frozenset({"deadline", "cancel", "crash", "quota", "retired", "prepare"})
# At most this many distinct tenants or tools are labels; later ones are counted as "other".
MAX_NAMES = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class BoundedNames:
    """Label values taken as they come, while they look like names and are few; else "other"."""

    def __init__(self, limit: int = MAX_NAMES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        if name in self._seen:  # the usual case: no lock, no pattern
            return name
        if not _NAME.fullmatch(name):
            return OTHER
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(name)
        return name


_methods: frozenset[str] = KNOWN_METHODS
_tenants = BoundedNames()
_tools = BoundedNames()


def known_methods(names: Iterable[str]) -> None:
    """Count requests for `names` under their own name too (a face's methods beyond the known)."""
    global _methods
    _methods = _methods | frozenset(names)


def method_label(method: str) -> str:
    return method if method in _methods else OTHER


def tenant_label(tenant: str | None = None) -> str:
    """`tenant` (default: the current context's) as a label: "" is the local user."""
    name = current_tenant() if tenant is None else tenant or LOCAL
    return _tenants(name)


def _one_of(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


# -- the metrics -----------------------------------------------------------------------------------

_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "llama_agent_requests",
    "Requests answered, by method, tenant and outcome.",
    ("method", "tenant", "outcome"),
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "llama_agent_request_seconds",
    "Time to answer a request, by method and tenant.",
    ("method", "tenant"),
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
RUNS = Counter(
    "llama_agent_agent_runs",
    "Agent runs ended, by tenant and outcome (stop reason, cancelled, failed).",
    ("tenant", "outcome"),
    registry=REGISTRY,
)
TURNS = Counter("llama_agent_agent_turns", "Model turns of agent runs.", ("tenant",), registry=REGISTRY)
TOKENS = Counter(
    "llama_agent_tokens",
    "Tokens of agent runs' turns, by tenant and kind (prompt, completion).",
    ("tenant", "kind"),
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "llama_agent_tool_calls",
    "Tool calls, by tool, tenant and outcome.",
    ("tool", "tenant", "outcome"),
    registry=REGISTRY,
)
TOOL_CALL_SECONDS = Histogram(
    "llama_agent_tool_call_seconds",
    "Time a tool call took in its sandbox, by tool.",
    ("tool",),
    buckets=_CALL_BUCKETS,
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "llama_agent_worker_restarts",
    "Worker processes killed or retired and replaced, by reason.",
    ("reason",),
    registry=REGISTRY,
)
MODEL_QUEUE_DEPTH = Gauge(
    "llama_agent_model_queue_depth", "Agent runs waiting for the model.", registry=REGISTRY
)
ACTIVE_RUNS = Gauge("llama_agent_active_runs", "Agent runs under way.", ("tenant",), registry=REGISTRY)
ACTIVE_SESSIONS = Gauge("llama_agent_active_sessions", "Sessions open.", ("tenant",), registry=REGISTRY)
SANDBOX_REFUSALS = Counter(
    "llama_agent_sandbox_refusals",
    "Calls or requests refused, by tenant and kind (consent, grant, quota).",
    ("tenant", "kind"),
    registry=REGISTRY,
)


Metric = TypeVar("Metric", Counter, Gauge, Histogram)


class _Children(Generic[Metric]):
    """A metric's children by label values, kept: `labels()` costs a lock and ~1 µs a call, a
    dictionary lookup a tenth of that (label values are bounded, and so is this)."""

    def __init__(self, metric: Metric) -> None:
        self._metric: Metric = metric
        self._children: dict[tuple[str, ...], Metric] = {}

    def __call__(self, *values: str) -> Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_requests, _request_seconds = _Children(REQUESTS), _Children(REQUEST_SECONDS)
_runs, _turns, _tokens = _Children(RUNS), _Children(TURNS), _Children(TOKENS)
_tool_calls, _tool_call_seconds = _Children(TOOL_CALLS), _Children(TOOL_CALL_SECONDS)
_active_runs, _active_sessions = _Children(ACTIVE_RUNS), _Children(ACTIVE_SESSIONS)
_refusals, _restarts = _Children(SANDBOX_REFUSALS), _Children(WORKER_RESTARTS)


# -- what callers call -----------------------------------------------------------------------------


def observe_request(method: str, tenant: str | None, outcome: str, seconds: float) -> None:
    """A request answered: `method` as the client named it (unknown ones count as "other"),
    `tenant` (None: the current context's; "": local), `outcome` one of REQUEST_OUTCOMES."""
    name, who = method_label(method), tenant_label(tenant)
    _requests(name, who, _one_of(outcome, REQUEST_OUTCOMES)).inc()
    _request_seconds(name, who).observe(seconds)


def set_model_queue_depth(waiting: int) -> None:
    """How many runs wait for the model now (the fair scheduler sets it as runs queue and leave)."""
    MODEL_QUEUE_DEPTH.set(waiting)


def session_opened(tenant: str | None = None) -> None:
    _active_sessions(tenant_label(tenant)).inc()


def session_closed(tenant: str | None = None) -> None:
    _active_sessions(tenant_label(tenant)).dec()


def sandbox_refusal(kind: str, tenant: str | None = None, count: int = 1) -> None:
    """A call or request (or `count` of them) refused: `kind` one of REFUSAL_KINDS (consent,
    grant, quota)."""
    _refusals(tenant_label(tenant), _one_of(kind, REFUSAL_KINDS)).inc(count)


def worker_restart(reason: str) -> None:
    """A worker process killed or retired, and another started: `reason` one of RESTART_REASONS."""
    _restarts(_one_of(reason, RESTART_REASONS)).inc()


def tool_call(tool: str, outcome: str, seconds: float | None) -> None:
    """A tool call ended with `outcome` (CALL_OUTCOMES); `seconds` in its sandbox (None: it never
    ran there)."""
    name = _tools(tool)
    _tool_calls(name, tenant_label(), _one_of(outcome, CALL_OUTCOMES)).inc()
    if seconds is not None:
        _tool_call_seconds(name).observe(seconds)


def run_started() -> None:
    _active_runs(tenant_label()).inc()


def run_ended(outcome: str) -> None:
    tenant = tenant_label()
    _active_runs(tenant).dec()
    _runs(tenant, _one_of(outcome, RUN_OUTCOMES)).inc()


def turn_started() -> None:
    _turns(tenant_label()).inc()


def turn_tokens(prompt: int, completion: int) -> None:
    tenant = tenant_label()
    _tokens(tenant, "prompt").inc(prompt)
    _tokens(tenant, "completion").inc(completion)


def scrape() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type (for `/metrics`)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
