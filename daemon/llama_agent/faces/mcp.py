"""The MCP face: the watched directories' Wasm tools as an MCP server over stdio.

A thin adapter over the composition root, like the LSP server: `tools/list` and `tools/call`
go to the same toolbox (same sandbox, same grants), and every hot reload that changes the tool
set sends `notifications/tools/list_changed` to the client. The SDK's server reads its messages
from llama_agent.faces.wire.lines (bounded lines, strict JSON, every bad line answered), not from the
SDK's own stdio transport.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import typing
from collections.abc import Iterable
from typing import Any, BinaryIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ValidationError

from llama_agent import __version__
from llama_agent.config import DaemonConfig
from llama_agent.core import Core, open_core
from llama_agent.faces.wire.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Rejection,
    brief,
    message_id,
)
from llama_agent.faces.wire.lines import Channel, open_stdio
from llama_agent.runtime.tools.schema import ArgumentError
from llama_agent.services.tools.registry import Tool, ToolSetChange, UnknownTool

log = logging.getLogger(__name__)


def _client_requests() -> dict[str, type[BaseModel]]:
    """Every request an MCP client may send, by method, with the SDK's model of it."""
    requests: dict[str, type[BaseModel]] = {}
    for request_class in typing.get_args(types.ClientRequestType):
        [method] = typing.get_args(request_class.model_fields["method"].annotation)
        requests[method] = request_class
    return requests


CLIENT_REQUESTS = _client_requests()


def checked_message(message: dict[str, Any]) -> Rejection | dict[str, Any]:
    """`message` as the SDK's server takes it, or why not.

    The SDK answers an unknown method and bad params alike with "Invalid request parameters",
    and only logs a message it cannot read at all, leaving a request unanswered: those are
    answered here, naming the method or the field. As on the LSP face, an empty array for
    `params` or for `tools/call`'s `arguments` is none (Lua, hence Neovim, encodes `{}` as `[]`).
    """
    method = message.get("method")
    if isinstance(method, str):
        message = _without_empty_arrays(message)
    if isinstance(method, str) and "id" in message:
        rejection = _check_request(method, message)
        if rejection is not None:
            return rejection
    try:
        types.JSONRPCMessage.model_validate(message)
    except ValidationError as error:
        request = isinstance(method, str) and "id" in message
        return Rejection(
            INVALID_REQUEST, f"Invalid request: {_explain(error)}", message_id(message.get("id")), request
        )
    return message


def _without_empty_arrays(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    if params == []:
        return {key: value for key, value in message.items() if key != "params"}
    if message["method"] == "tools/call" and isinstance(params, dict) and params.get("arguments") == []:
        return {**message, "params": {**params, "arguments": {}}}
    return message


def _check_request(method: str, message: dict[str, Any]) -> Rejection | None:
    request_id = message_id(message["id"])
    request_class = CLIENT_REQUESTS.get(method)
    if request_class is None:
        return Rejection(METHOD_NOT_FOUND, f"Method not found: {brief(method)}", request_id)
    request = {"method": method, **({"params": message["params"]} if "params" in message else {})}
    try:
        request_class.model_validate(request)
    except ValidationError as error:
        return Rejection(INVALID_PARAMS, f"invalid params for {brief(method)}: {_explain(error)}", request_id)
    return None


def _explain(error: ValidationError) -> str:
    """The first few problems, each with where it is (`params.name: Field required`)."""
    problems = [
        f"{'.'.join(map(str, problem['loc'])) or 'the message'}: {problem['msg']}"
        for problem in error.errors()[:3]
    ]
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return brief("; ".join(problems), 400) + more


def mcp_tool(tool: Tool) -> types.Tool:
    """A tool as MCP lists it, with hints derived from its grants: read-only unless it may write
    somewhere; never open-world (no tool has the network)."""
    writes = tool.writes
    metadata = tool.loaded.metadata
    return types.Tool(
        name=metadata.name,
        title=metadata.name,
        description=metadata.description,
        inputSchema=tool.input_schema,
        annotations=types.ToolAnnotations(
            readOnlyHint=not writes, destructiveHint=writes, idempotentHint=not writes, openWorldHint=False
        ),
    )


def _texts(texts: Iterable[str]) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=text) for text in texts]


class McpFace:
    """The MCP server's handlers over one core; `notify_changed` may be called from any thread."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.server: Server[Any, Any] = Server("llama-agent", version=__version__)
        self.server.list_tools()(self.list_tools)  # type: ignore[no-untyped-call]
        self.server.call_tool(validate_input=False)(self.call_tool)
        self._session: ServerSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def list_tools(self) -> list[types.Tool]:
        self._remember_session()
        snapshot = await self.core.toolbox.ready()
        return [mcp_tool(snapshot.tools[name]) for name in sorted(snapshot.tools)]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """A tool's result, or its error, as content with `isError`: the toolbox checks the
        arguments against the tool's schema (naming the bad field) before anything runs."""
        self._remember_session()
        await self.core.toolbox.ready()
        try:
            result = await self.core.toolbox.invoke(name, arguments)
        except (UnknownTool, ArgumentError) as error:
            return types.CallToolResult(content=_texts([str(error)]), isError=True)
        return types.CallToolResult(content=_texts(result.texts()), isError=result.invocation.is_error)

    def notify_changed(self, change: ToolSetChange) -> None:
        if change and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._send_changed()))

    async def _send_changed(self) -> None:
        if self._session is not None:
            await self._session.send_tool_list_changed()

    def _remember_session(self) -> None:
        # The SDK makes the session inside `run`; its requests carry it. A client learns of tool
        # changes only after it has listed the tools anyway.
        self._session = self.server.request_context.session

    async def serve(self, out: BinaryIO) -> None:
        """Serve on stdin and `out` until stdin ends."""
        self._loop = asyncio.get_running_loop()
        options = self.server.create_initialization_options(NotificationOptions(tools_changed=True))
        channel = await open_stdio(sys.stdin.buffer, out, checked_message)
        to_server, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        outgoing, from_server = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_read_messages, channel, to_server)
            tasks.start_soon(_write_messages, from_server, channel)
            await self.server.run(incoming, outgoing, options)


async def _read_messages(
    channel: Channel, server: MemoryObjectSendStream[SessionMessage | Exception]
) -> None:
    """The client's well-formed messages to the server, until stdin ends (which ends `run`)."""
    async with server:
        while (message := await channel.receive()) is not None:
            await server.send(SessionMessage(types.JSONRPCMessage.model_validate(message)))


async def _write_messages(server: MemoryObjectReceiveStream[SessionMessage], channel: Channel) -> None:
    async with server:
        async for outgoing in server:
            await channel.send(outgoing.message.model_dump(mode="json", by_alias=True, exclude_none=True))


def serve_mcp(config: DaemonConfig, out: BinaryIO) -> int:
    """Serve MCP on stdin and `out` (the protocol's own copy of stdout) until the client closes
    stdin."""
    with open_core(config, watch=True) as core:
        face = McpFace(core)
        core.subscribe(face.notify_changed)
        anyio.run(face.serve, out)
    return 0
