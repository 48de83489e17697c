"""The HTTP side of authentication and refusals: who a request is from (its bearer token), and the
answers to a request that is not let in (401 with `WWW-Authenticate`, 429 with `Retry-After`, 503
while stopping)."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import URL, Headers
from starlette.responses import JSONResponse, Response

from llama_agent.common.errors import QuotaExceeded
from llama_agent.faces.network.state import ServiceState
from llama_agent.runtime.telemetry import metrics
from llama_agent.services.tenants.auth import Unauthorized
from llama_agent.services.tenants.config import Tenant

log = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-protected-resource"
LSP_PATH = "/lsp"
MCP_PATH = "/mcp"
# A request refused before any session (no or a bad token) is counted under this tenant label.
NO_TENANT = "unauthenticated"

# Connections and requests refused at the door are counted under their route.
metrics.known_methods({LSP_PATH, MCP_PATH})


def count_refusal(route: str, tenant: Tenant | None, outcome: str, started: float) -> None:
    """A request refused before it reached a session (`outcome`: unauthorized, quota, refused)."""
    name = tenant.name if tenant is not None else NO_TENANT
    metrics.observe_request(route, name, outcome, time.perf_counter() - started)


async def tenant_of(state: ServiceState, headers: Headers) -> Tenant | None:
    """The tenant the request's bearer token names; None (logged, never the token) if none."""
    try:
        return await state.verifier.tenant_for(headers.get("authorization"))
    except Unauthorized as error:
        log.warning("refusing a request: %s", error)
        return None


def unauthorized(state: ServiceState, url: URL) -> Response:
    """401, with how to authenticate: a bearer token (and, with JWT, where the resource's
    metadata is, as MCP's authorization spec asks)."""
    challenge = 'Bearer realm="llama-agent"'
    if state.settings.jwt is not None:
        challenge += f', resource_metadata="{metadata_url(url)}"'
    body = {"error": "unauthorized", "message": "a valid `Authorization: Bearer TOKEN` is required"}
    return JSONResponse(body, 401, headers={"WWW-Authenticate": challenge})


def metadata_url(url: URL) -> str:
    return str(url.replace(path=METADATA_PATH, query="", fragment=""))


def over_quota(error: QuotaExceeded) -> Response:
    retry_after = str((error.data or {}).get("retryAfter", 1))
    body = {"error": "quota_exceeded", "message": error.message, "data": error.data}
    return JSONResponse(body, 429, headers={"Retry-After": retry_after})


def stopping() -> Response:
    return JSONResponse({"error": "stopping", "message": "the service is stopping"}, 503)
