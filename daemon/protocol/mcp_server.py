"""The MCP face: the watched directories' Wasm tools as an MCP server over stdio.

A thin adapter over the composition root, like the LSP server: `tools/list` and `tools/call`
go to the same toolbox (same sandbox, same grants), and every hot reload that changes the tool
set sends `notifications/tools/list_changed` to the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from io import TextIOWrapper
from typing import Any, BinaryIO

import anyio
from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server

from daemon import __version__
from daemon.config import DaemonConfig
from daemon.core import Core, build_core
from daemon.runtime.schema import ArgumentError
from daemon.services.toolbox import Tool, ToolSetChange, UnknownTool

log = logging.getLogger(__name__)


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
        self._loop = asyncio.get_running_loop()
        options = self.server.create_initialization_options(NotificationOptions(tools_changed=True))
        stdout = anyio.wrap_file(TextIOWrapper(out, encoding="utf-8", write_through=True))
        async with stdio_server(stdout=stdout) as (read, write):
            await self.server.run(read, write, options)


def serve_mcp(config: DaemonConfig, out: BinaryIO) -> int:
    """Serve MCP on stdin and `out` (the protocol's own copy of stdout) until the client closes
    stdin."""
    face: McpFace | None = None

    def changed(change: ToolSetChange) -> None:
        if face is not None:
            face.notify_changed(change)

    core = build_core(config, on_change=changed)
    face = McpFace(core)
    try:
        anyio.run(face.serve, out)
    finally:
        core.close()
    return 0
