"""Running the service: the tenants and their cores, one uvicorn server on a socket bound here, and
the stop.

SIGTERM (or SIGINT) begins the stop at once: `/readyz` answers 503 and nothing new is let in (a
WebSocket upgrade or MCP request gets 503, a request on an open LSP connection "the server is
shutting down"); the requests already running (tool calls, agent runs) get up to
STOP_GRACE_SECONDS to finish and be answered; then the tools' workers are ended, each LSP
connection is closed with WebSocket's going-away code (1001), the server stops and the process
exits 0. uvicorn's own signal handling is replaced by this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from llama_agent import __version__
from llama_agent.config import DaemonConfig
from llama_agent.core import Service, open_service
from llama_agent.faces.lsp.server import STOP_GRACE_SECONDS
from llama_agent.faces.network.app import build_app
from llama_agent.faces.network.lsp_socket import GOING_AWAY
from llama_agent.faces.network.settings import ServiceSettings
from llama_agent.faces.network.state import ServiceState
from llama_agent.runtime.models.backend import ModelLoader
from llama_agent.services.tenants.auth import JwtVerifier, TokenVerifier
from llama_agent.services.tenants.config import load_tenants

log = logging.getLogger(__name__)

# The largest WebSocket frame (one JSON-RPC message) a client may send.
MAX_FRAME_BYTES = 8 * 1024 * 1024
POLL_SECONDS = 0.05


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the service's own stop runs instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve_network(
    config: DaemonConfig, settings: ServiceSettings, model_loader: ModelLoader | None = None
) -> int:
    """Serve until SIGTERM; 0 after an orderly stop. Raises TenantsFileError for a bad tenants
    file, OSError when the address cannot be bound."""
    tenants = load_tenants(settings.tenants_file)
    jwt = JwtVerifier(settings.jwt) if settings.jwt is not None else None
    verifier = TokenVerifier(tenants, jwt)
    listener = bind(settings.host, settings.port)
    service = open_service(config, tenants, model_loader)
    try:
        if config.session.eager_model_load:
            service.models.start_loading()
        return asyncio.run(_serve(ServiceState(settings, service, verifier), listener))
    finally:
        service.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.listen(128)
    listener.set_inheritable(False)
    return listener


async def _serve(state: ServiceState, listener: socket.socket) -> int:
    settings = state.settings
    server = _Server(
        uvicorn.Config(
            build_app(state),
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            ws_max_size=MAX_FRAME_BYTES,
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
            timeout_graceful_shutdown=2,
        )
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state.begin_stop)
    host, port = listener.getsockname()[:2]
    log.info(
        "llama-agent %s serving %d tenant(s) on %s://%s:%d",
        __version__,
        len(state.service.cores),
        settings.scheme,
        f"[{host}]" if ":" in host else host,
        port,
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    stopping = asyncio.create_task(state.stop_requested.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if state.stopping:
        log.info("stopping: letting the running calls and runs finish")
        await _drain(state, state.service)
        server.should_exit = True
    stopping.cancel()
    await serving
    return 0


async def _drain(state: ServiceState, service: Service) -> None:
    """The grace period, then the end of what still runs, then every connection closed (1001)."""
    deadline = asyncio.get_running_loop().time() + STOP_GRACE_SECONDS
    while state.busy() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(POLL_SECONDS)
    if state.busy():
        log.warning("stopping the calls and runs still running after %.0f s", STOP_GRACE_SECONDS)
    await asyncio.to_thread(_close_toolboxes, service)
    # The stopped calls' handlers resume, and their answers go out, a few event-loop turns later.
    await asyncio.sleep(POLL_SECONDS)
    for connection in list(state.connections):
        connection.close(GOING_AWAY)
    await asyncio.sleep(POLL_SECONDS)


def _close_toolboxes(service: Service) -> None:
    for core in list(service.cores.values()):
        core.toolbox.close()
