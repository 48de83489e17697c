"""Who a piece of work is for: the tenant, session and request it serves, in context variables.

A face sets them when it takes a request (`tenant.set(name)`, `session_id.set(...)`,
`request_id.set(...)`): asyncio copies the context into every task it starts, and
`asyncio.to_thread` into its thread, so whatever the request leads to (a run, its tool calls, its
log records, its audit records) knows whom it is for without passing it along. Unset, the work is
the local user's: tenant "local", no session or request id.

The tenant must be a configured tenant's name (from the tenants file, or the one a verified token
maps to), never a value a client sent: it becomes a metric label.
"""

from __future__ import annotations

from contextvars import ContextVar

LOCAL = "local"

tenant: ContextVar[str | None] = ContextVar("llama_agent_tenant", default=None)
session_id: ContextVar[str | None] = ContextVar("llama_agent_session_id", default=None)
request_id: ContextVar[str | None] = ContextVar("llama_agent_request_id", default=None)


def current_tenant() -> str:
    """The tenant the current work is for: "local" when no face said."""
    return tenant.get() or LOCAL


def current_ids() -> dict[str, str]:
    """The ids that are set, by name ("tenant", "session_id", "request_id"): for log and audit
    records."""
    ids: dict[str, str] = {}
    for name, variable in (("tenant", tenant), ("session_id", session_id), ("request_id", request_id)):
        value = variable.get()
        if value is not None:
            ids[name] = value
    return ids
