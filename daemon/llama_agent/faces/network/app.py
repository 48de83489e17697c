"""The Starlette app: every route of the service on one port.

`/healthz` (the process answers), `/readyz` (every tenant's tools are loaded and the service is not
stopping), `/metrics` (Prometheus text; unauthenticated, like the health routes: bind the port
where only the operator's network reaches it, or have the proxy guard it),
`/.well-known/oauth-protected-resource` (RFC 9728, with JWT), `/lsp` and `/mcp`. While it runs, the
tenants file is reloaded on change (reloading.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from llama_agent.faces.network.http import METADATA_PATH
from llama_agent.faces.network.lsp_socket import lsp_endpoint
from llama_agent.faces.network.mcp_http import McpEndpoint
from llama_agent.faces.network.reloading import McpManagers, TenantsReloading
from llama_agent.faces.network.state import ServiceState
from llama_agent.runtime.telemetry.metrics import scrape


def build_app(state: ServiceState) -> Starlette:
    mcp = McpEndpoint(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(_wait_for_tools(state))
        managers = McpManagers()
        for tenant in mcp.tenants.values():
            await managers.start(tenant)
        # The tenants file is read again whenever it changes, from now on.
        reloading = TenantsReloading(state, mcp, managers, asyncio.get_running_loop())
        reloading.start()
        yield
        reloading.stop()
        await managers.stop_all()
        loading.cancel()

    routes = [
        Route("/healthz", _healthz),
        Route("/readyz", _readyz),
        Route("/metrics", _metrics),
        Route(METADATA_PATH, _resource_metadata),
        WebSocketRoute("/lsp", lsp_endpoint),
        Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = state
    return app


async def _wait_for_tools(state: ServiceState) -> None:
    for core in list(state.service.cores.values()):  # a reload may change them meanwhile
        await core.toolbox.ready()
    state.tools_loaded = True


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _readyz(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    if state.ready():
        return PlainTextResponse("ready\n")
    return PlainTextResponse("stopping\n" if state.stopping else "loading tools\n", 503)


async def _metrics(request: Request) -> Response:
    body, content_type = scrape()
    return Response(body, headers={"Content-Type": content_type})


async def _resource_metadata(request: Request) -> Response:
    """RFC 9728's metadata: which authorization server issues tokens for this resource."""
    state: ServiceState = request.app.state.service
    jwt = state.settings.jwt
    if jwt is None:
        return JSONResponse({"error": "not_found"}, 404)
    resource = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "resource": resource,
            "authorization_servers": [jwt.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "llama-agent",
        }
    )
