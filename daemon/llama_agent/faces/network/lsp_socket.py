"""`/lsp`: the LSP face over a WebSocket, one JSON-RPC message per text frame, one session per
connection.

Each connection gets a server of its own (faces/lsp/server.py's `build_server`): its own request
ids, progress tokens, cancels and session, over its tenant's core. Messages are checked as on
stdio (faces/lsp/framing.py's `deliver`: a frame that is not JSON gets the same answer); frames
are bounded by the WebSocket server (uvicorn's `ws_max_size`). `exit` closes the connection, not
the process. The session's workspace must lie inside the tenant's `workspace_root`, symlinks
resolved: anything else is answered InvalidParams naming the field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path
from starlette.websockets import WebSocket, WebSocketDisconnect

from llama_agent.common.errors import INVALID_REQUEST, InvalidParams, QuotaExceeded
from llama_agent.faces.lsp.framing import deliver
from llama_agent.faces.lsp.protocol import AgentProtocol
from llama_agent.faces.lsp.server import AgentServer, build_server
from llama_agent.faces.network import http
from llama_agent.faces.network.state import ServiceState
from llama_agent.runtime.telemetry import context as telemetry
from llama_agent.runtime.telemetry import metrics
from llama_agent.services.tenants.config import Tenant

log = logging.getLogger(__name__)

GOING_AWAY = 1001
NORMAL_CLOSURE = 1000


def tenant_workspace(root: Path, params: types.InitializeParams) -> Path:
    """The workspace `initialize` asks for (the first folder, else rootUri, else rootPath; none:
    `root`), each one named required to lie inside `root` once resolved; InvalidParams otherwise."""
    named: list[tuple[str, str | None]] = [
        (f"workspaceFolders[{i}].uri", _local_path(folder.uri))
        for i, folder in enumerate(params.workspace_folders or [])
    ]
    if params.root_uri:
        named.append(("rootUri", _local_path(params.root_uri)))
    if params.root_path:
        named.append(("rootPath", params.root_path))
    for field, path in named:
        _check_inside(root, field, path)
    return Path(os.path.realpath(named[0][1])) if named and named[0][1] else root


def _local_path(uri: str) -> str | None:
    return to_fs_path(uri) if uri.startswith("file:") else None


def _check_inside(root: Path, field: str, path: str | None) -> None:
    if not path:
        message = f"invalid params: {field} must be a file: URI inside the tenant's workspace"
        raise InvalidParams(message, field)
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(root):
        raise InvalidParams(f"invalid params: {field} lies outside the tenant's workspace", field)
    if not resolved.is_dir():
        raise InvalidParams(f"invalid params: {field} is not a directory", field)


class SocketWriter:
    """pygls' writer on a WebSocket: messages are sent in order, one per text frame, by one task;
    `close(code)` closes the socket once what was written before has gone."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._queue: asyncio.Queue[str | int] = asyncio.Queue()

    def write(self, data: bytes) -> None:
        self._queue.put_nowait(data.decode("utf-8"))

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        self._queue.put_nowait(code)

    async def pump(self) -> None:
        try:
            while isinstance(item := await self._queue.get(), str):
                await self._websocket.send_text(item)
            await self._websocket.close(item)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went first
            pass


class LspConnection:
    """One WebSocket client of `tenant`: its server, its writer, its tenant's limits."""

    def __init__(self, websocket: WebSocket, server: AgentServer, tenant: str) -> None:
        self.tenant = tenant
        self.server = server
        self.protocol: AgentProtocol = server.protocol
        self.writer = SocketWriter(websocket)
        self.protocol.framed = False
        self.protocol.set_writer(self.writer, include_headers=False)
        self.protocol.on_exit = self.writer.close

    def stop_accepting(self) -> None:
        self.protocol.shut_down = True  # requests are answered "the server is shutting down"

    def busy(self) -> bool:
        return any(isinstance(f, asyncio.Task) and not f.done() for f in self._handled())

    def close(self, code: int) -> None:
        self.writer.close(code)

    def cancel_running(self) -> None:
        for future in self._handled():
            if isinstance(future, asyncio.Task):
                future.cancel()

    def _handled(self) -> list[object]:
        # pygls keeps each request being handled (and each of ours awaiting an answer) by id.
        return list(self.protocol._request_futures.values())

    async def receive(self, websocket: WebSocket) -> None:
        """Hand each text frame to the protocol until the client closes."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self.protocol.send_message(_error(INVALID_REQUEST, "Invalid request: send text frames"))
                continue
            deliver(text.encode("utf-8"), self.protocol)


def _error(code: int, message: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


async def lsp_endpoint(websocket: WebSocket) -> None:
    state: ServiceState = websocket.app.state.service
    started = time.perf_counter()
    tenant = await http.tenant_of(state, websocket.headers)
    if tenant is None:
        http.count_refusal(http.LSP_PATH, None, "unauthorized", started)
        await websocket.send_denial_response(http.unauthorized(state, websocket.url))
        return
    if state.stopping:
        http.count_refusal(http.LSP_PATH, tenant, "refused", started)
        await websocket.send_denial_response(http.stopping())
        return
    try:
        release = state.quota(tenant).open_session()
    except QuotaExceeded as error:
        http.count_refusal(http.LSP_PATH, tenant, "quota", started)
        await websocket.send_denial_response(http.over_quota(error))
        return
    try:
        await _serve(websocket, state, tenant)
    finally:
        release()


async def _serve(websocket: WebSocket, state: ServiceState, tenant: Tenant) -> None:
    # The connection's context, copied by every handler's task: logs, spans and metrics say whose.
    telemetry.tenant.set(tenant.name)
    telemetry.session_id.set(uuid.uuid4().hex[:12])
    metrics.session_opened(tenant.name)
    try:
        await _serve_connection(websocket, state, tenant)
    finally:
        metrics.session_closed(tenant.name)


async def _serve_connection(websocket: WebSocket, state: ServiceState, tenant: Tenant) -> None:
    server = build_server()
    server.configure(state.core(tenant))
    server.workspace_for = lambda params: tenant_workspace(tenant.workspace_root, params)
    server.quota = state.quota(tenant)
    await websocket.accept()
    connection = LspConnection(websocket, server, tenant.name)
    state.connections.add(connection)
    pump = asyncio.create_task(connection.writer.pump())
    log.info("tenant %s: LSP connection opened", tenant.name)
    try:
        await connection.receive(websocket)
    finally:
        state.connections.discard(connection)
        connection.cancel_running()  # the client is gone: its runs and calls are no one's
        connection.writer.close(GOING_AWAY if state.stopping else NORMAL_CLOSURE)
        server.disconnect()
        await asyncio.wait({pump}, timeout=1.0)
        pump.cancel()
        log.info("tenant %s: LSP connection closed", tenant.name)
