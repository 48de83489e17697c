"""`/mcp`: the MCP face over MCP's Streamable HTTP transport (the `mcp` SDK's session manager).

One session manager per tenant, over that tenant's core: an MCP session id of one tenant is
unknown to another's manager (404), and each MCP session gets a session of its own on its
tenant's core (faces/mcp.py's `connection_sessions`), with the tenant's workspace root as its
workspace. Every request is authenticated; the one that opens an MCP session takes one of the
tenant's `max_sessions` (429 with Retry-After when none is left), given back when the MCP session
ends.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from llama_agent.common.errors import QuotaExceeded
from llama_agent.core import Core
from llama_agent.faces.mcp import McpFace
from llama_agent.faces.network import http
from llama_agent.faces.network.state import ServiceState
from llama_agent.runtime.telemetry import context as telemetry
from llama_agent.runtime.telemetry import metrics
from llama_agent.services.sessions import Asker, Session
from llama_agent.services.tenants.config import Tenant
from llama_agent.services.tenants.quotas import TenantQuota

# The session quota taken by the request that opens an MCP session, for that session's run (which
# the manager starts from the request's task, so it sees this context) to give back as it ends.
_admitted: ContextVar[Callable[[], None] | None] = ContextVar("mcp_admitted", default=None)


class TenantMcp:
    """One tenant's MCP server and session manager."""

    def __init__(self, tenant: Tenant, core: Core, quota: TenantQuota) -> None:
        self.tenant = tenant
        self._core = core
        self._quota = quota
        self.face = McpFace(core, self._session)
        core.subscribe(self.face.notify_changed)
        self.manager = StreamableHTTPSessionManager(self.face.server)

    @contextlib.contextmanager
    def _session(self, asker: Asker) -> Iterator[Session]:
        release = _admitted.get()
        # The MCP session's task (and every request it handles) runs in this context.
        telemetry.session_id.set(uuid.uuid4().hex[:12])
        metrics.session_opened(self.tenant.name)
        try:
            yield self._core.open_session(
                workspace=self.tenant.workspace_root, asker=asker, quota=self._quota
            )
        finally:
            metrics.session_closed(self.tenant.name)
            if release is not None:
                release()


class McpEndpoint:
    """The ASGI app of `/mcp`: authenticates, admits, and hands the request to its tenant's manager."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self.tenants = {
            tenant.name: TenantMcp(tenant, state.core(tenant), state.quota(tenant))
            for tenant in state.verifier.tenants
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request, started = Request(scope, receive), time.perf_counter()
        tenant = await http.tenant_of(self._state, request.headers)
        if tenant is None:
            http.count_refusal(http.MCP_PATH, None, "unauthorized", started)
            await http.unauthorized(self._state, request.url)(scope, receive, send)
            return
        telemetry.tenant.set(tenant.name)
        if self._state.stopping:
            http.count_refusal(http.MCP_PATH, tenant, "refused", started)
            await http.stopping()(scope, receive, send)
            return
        opening = request.method == "POST" and MCP_SESSION_ID_HEADER not in request.headers
        release = None
        if opening:
            try:
                release = self._state.quota(tenant).open_session()
            except QuotaExceeded as error:
                http.count_refusal(http.MCP_PATH, tenant, "quota", started)
                await http.over_quota(error)(scope, receive, send)
                return
        await self._handle(self.tenants[tenant.name], release, scope, receive, send)

    async def _handle(
        self, mcp: TenantMcp, release: Callable[[], None] | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status: list[int] = []

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        token = _admitted.set(release)
        finished = self._state.track() if scope["method"] == "POST" else None
        try:
            await mcp.manager.handle_request(scope, receive, watching)
        finally:
            _admitted.reset(token)
            if finished is not None:
                finished()
            if release is not None and (not status or status[0] >= 400):
                release()  # no session was opened (its run, if it started, gives it back too)
