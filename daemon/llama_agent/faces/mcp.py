"""The MCP face: the watched directories' Wasm tools as an MCP server over stdio.

A thin adapter over the composition root, like the LSP server: `tools/list` and `tools/call`
go to one session on the core (same sandbox, same grants; its workspace is `--workspace`, or the
directory the server was started in), and every hot reload that changes the tool set sends
`notifications/tools/list_changed` to the client. A call that may write asks the person first,
with an elicitation (`elicitation/create`) when the client declared that capability; otherwise it
is refused, with a result saying what it would write where and how to approve (`--allow-writes`,
or a client with elicitation). The SDK's server reads its messages from
llama_agent.faces.wire.lines (bounded lines, strict JSON, every bad line answered), not from the
SDK's own stdio transport.

Over HTTP (faces/network), each MCP session is a client of its own: `McpFace(core,
connection_sessions)` gives each run of its SDK server (one per MCP session) a session of its own
on the core, which that run's handlers find in `_connection_session`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, BinaryIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ValidationError

from llama_agent import __version__
from llama_agent.common.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    AgentError,
    MethodNotFound,
    NotInitialized,
    QuotaExceeded,
)
from llama_agent.common.text import visible
from llama_agent.core import Core
from llama_agent.faces.wire.jsonrpc import (
    Rejection,
    agent_error,
    brief,
    explain,
    message_id,
    rejection,
)
from llama_agent.faces.wire.lines import Channel, open_stdio
from llama_agent.runtime.telemetry.metrics import observe_request
from llama_agent.services.consent.calls import CannotAsk, Choice, ConsentRequest
from llama_agent.services.sessions import Asker, Session
from llama_agent.services.tools.registry import Tool, ToolSetChange

log = logging.getLogger(__name__)


def _client_requests() -> dict[str, type[BaseModel]]:
    """Every request an MCP client may send, by method, with the SDK's model of it."""
    requests: dict[str, type[BaseModel]] = {}
    for request_class in typing.get_args(types.ClientRequestType):
        [method] = typing.get_args(request_class.model_fields["method"].annotation)
        requests[method] = request_class
    return requests


CLIENT_REQUESTS = _client_requests()
# Requests the SDK's session answers before `initialize` (MCP allows pings at any time).
BEFORE_INITIALIZE = frozenset({"initialize", "ping"})


def served_methods(server: Server[Any, Any]) -> frozenset[str]:
    """The requests `server` answers: those it has handlers for, and `initialize` (its session's)."""
    handlers = server.request_handlers
    return frozenset(
        {method for method, request in CLIENT_REQUESTS.items() if request in handlers} | {"initialize"}
    )


class McpMessages:
    """What the MCP face answers itself, before the SDK's server sees a message.

    The SDK answers an unknown method, a request before `initialize` and bad params alike with
    "Invalid request parameters" (and logs each at length), and only logs a message it cannot
    read at all, leaving a request unanswered: those are answered here as on every face, naming
    the method or the field: an unknown method (one `served` lacks) -32601, a request before
    `initialize` -32002, bad params -32602. As on the LSP face, an empty array for `params` or
    for `tools/call`'s `arguments` is none (Lua, hence Neovim, encodes `{}` as `[]`).
    """

    def __init__(self, served: Iterable[str]) -> None:
        self._served = frozenset(served)
        self._initialized = False

    def __call__(self, message: dict[str, Any]) -> Rejection | dict[str, Any]:
        """`message` as the SDK's server takes it, or why not."""
        method = message.get("method")
        if isinstance(method, str):
            message = _without_empty_arrays(message)
        if isinstance(method, str) and "id" in message:
            refused = self._check_request(method, message)
            if refused is not None:
                return refused
        try:
            types.JSONRPCMessage.model_validate(message)
        except ValidationError as error:
            request = isinstance(method, str) and "id" in message
            return Rejection(
                INVALID_REQUEST, f"Invalid request: {explain(error)}", message_id(message.get("id")), request
            )
        self._initialized = self._initialized or (method == "initialize" and "id" in message)
        return message

    def _check_request(self, method: str, message: dict[str, Any]) -> Rejection | None:
        request_id = message_id(message["id"])
        request_class = CLIENT_REQUESTS.get(method)
        if request_class is None or method not in self._served:
            return rejection(MethodNotFound(brief(method)), request_id)
        if not self._initialized and method not in BEFORE_INITIALIZE:
            return rejection(NotInitialized(), request_id)
        request = {"method": method, **({"params": message["params"]} if "params" in message else {})}
        try:
            request_class.model_validate(request)
        except ValidationError as error:
            reason = f"invalid params for {brief(method)}: {explain(error)}"
            return Rejection(INVALID_PARAMS, reason, request_id)
        return None


def _without_empty_arrays(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    if params == []:
        return {key: value for key, value in message.items() if key != "params"}
    if message["method"] == "tools/call" and isinstance(params, dict) and params.get("arguments") == []:
        return {**message, "params": {**params, "arguments": {}}}
    return message


def mcp_error(error: AgentError) -> McpError:
    """The daemon's error as MCP answers it (a protocol error): its code, message and data."""
    return McpError(types.ErrorData(code=error.code, message=error.message, data=error.data))


RequestHandler = Callable[[Any], Awaitable[types.ServerResult]]


def answering_errors(server: Server[Any, Any]) -> None:
    """Every request handler of `server` answering what it raises as every face answers it
    (`mcp_error`; an internal error is logged and names only its type), never as the SDK's
    code 0 with the exception's text."""
    for request_class, handler in list(server.request_handlers.items()):
        server.request_handlers[request_class] = _answering(handler, request_class.__name__)


def _answering(handler: RequestHandler, name: str) -> RequestHandler:
    async def answering(request: Any) -> types.ServerResult:
        started, outcome = time.perf_counter(), "error"
        try:
            result = await handler(request)
            outcome = "ok"
            return result
        except McpError:
            raise
        except AgentError as error:
            outcome = "quota" if isinstance(error, QuotaExceeded) else "error"
            log.warning("refusing MCP's %s: %s", name, error.message)
            raise mcp_error(error) from error
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as error:
            raise mcp_error(agent_error(error, f"MCP's {name}")) from error
        finally:
            observe_request(
                str(getattr(request, "method", name)), None, outcome, time.perf_counter() - started
            )

    return answering


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


# Why a call that may write is refused when the client cannot be asked, and how to approve it.
NO_ELICITATION = (
    "this client cannot ask the person (it did not declare the `elicitation` capability): start the "
    "server with `llama-agent mcp --allow-writes` to approve writes up front, or use a client that "
    "supports elicitation"
)
ALWAYS = "always"
# The elicitation's form: accepting allows the call (once, or always for this tool in this
# session); declining or cancelling rejects it.
CONSENT_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        ALWAYS: {
            "type": "boolean",
            "title": "Always allow this tool in this session",
            "description": "Allow its later calls too, while the tool and where it may write stay the same",
            "default": False,
        }
    },
}


# A session on the core for each MCP session (over HTTP): opened as its server run starts,
# closed as it ends. Given the face, which asks the person.
ConnectionSessions = Callable[[Asker], AbstractContextManager[Session]]
# The session of the MCP session being served, in its run's handlers (over HTTP).
_connection_session: ContextVar[Session | None] = ContextVar("mcp_connection_session", default=None)


class _SessionPerRun(Server[Any, Any]):
    """The SDK's server, with a session of its own on the core for each run (each MCP session)."""

    def __init__(self, open_session: ConnectionSessions, asker: Asker) -> None:
        super().__init__("llama-agent", version=__version__)
        self._open_session = open_session
        self._asker = asker

    def create_initialization_options(self, *args: Any, **kwargs: Any) -> Any:
        if not args and "notification_options" not in kwargs:
            args = (NotificationOptions(tools_changed=True),)
        return super().create_initialization_options(*args, **kwargs)

    async def run(self, *args: Any, **kwargs: Any) -> None:
        # The handlers run in tasks of this one's task group: they see the context set here.
        with self._open_session(self._asker) as session:
            token = _connection_session.set(session)
            try:
                await super().run(*args, **kwargs)
            finally:
                _connection_session.reset(token)


class McpFace:
    """The MCP server's handlers over one core and one session on it (the client's), or one per
    MCP session (`connection_sessions`, over HTTP); it asks the person about calls that may write.
    `notify_changed` may be called from any thread."""

    def __init__(self, core: Core, connection_sessions: ConnectionSessions | None = None) -> None:
        self.core = core
        self._only_session: Session | None = None
        self.server: Server[Any, Any]
        if connection_sessions is None:
            self._only_session = core.open_session(workspace=core.config.session.workspace, asker=self)
            self.server = Server("llama-agent", version=__version__)
        else:
            self.server = _SessionPerRun(connection_sessions, self)
        self.server.list_tools()(self.list_tools)  # type: ignore[no-untyped-call]
        # Not through the SDK's decorator, which answers every exception as a tool's failed result.
        self.server.request_handlers[types.CallToolRequest] = self._call_tool
        answering_errors(self.server)
        self._clients: weakref.WeakSet[ServerSession] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> Session:
        """The session of the client being served."""
        session = _connection_session.get() or self._only_session
        if session is None:
            raise NotInitialized()
        return session

    async def list_tools(self) -> list[types.Tool]:
        self._remember_session()
        tools = await self.session.ready()
        return [mcp_tool(tools[name]) for name in sorted(tools)]

    async def _call_tool(self, request: types.CallToolRequest) -> types.ServerResult:
        return types.ServerResult(await self.call_tool(request.params.name, request.params.arguments or {}))

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """A tool's result, or its error, as content with `isError`. An unknown tool, or arguments
        that do not fit its schema (the toolbox checks them before anything runs), is a protocol
        error, answered as on the LSP face (-32602, naming the tool or the field)."""
        self._remember_session()
        result = await self.session.invoke(name, arguments)
        return types.CallToolResult(content=_texts(result.texts()), isError=result.invocation.is_error)

    async def ask(self, request: ConsentRequest) -> Choice:
        """The person's answer to an elicitation about the call (which the client asked for, so
        it knows of it); CannotAsk if the client did not declare elicitation."""
        context = self.server.request_context
        client = context.session.client_params
        if client is None or client.capabilities.elicitation is None:
            raise CannotAsk(NO_ELICITATION)
        try:
            answer = await context.session.elicit(request.message(), CONSENT_FORM, context.request_id)
        except McpError as error:
            raise CannotAsk(f"the client could not ask: {visible(error.error.message)}") from error
        if answer.action != "accept":
            return Choice.REJECT
        return Choice.ALLOW_ALWAYS if (answer.content or {}).get(ALWAYS) is True else Choice.ALLOW_ONCE

    def notify_changed(self, change: ToolSetChange) -> None:
        if change and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._send_changed()))

    async def _send_changed(self) -> None:
        for client in list(self._clients):
            try:
                await client.send_tool_list_changed()
            except Exception as error:  # a client gone meanwhile: the others still hear of it
                log.debug("cannot tell an MCP client of the change: %s", error)

    def _remember_session(self) -> None:
        # The SDK makes the session inside `run`; its requests carry it. A client learns of tool
        # changes only after it has listed the tools anyway.
        self._loop = self._loop or asyncio.get_running_loop()
        self._clients.add(self.server.request_context.session)

    async def serve(self, out: BinaryIO) -> None:
        """Serve on stdin and `out` until stdin ends."""
        self._loop = asyncio.get_running_loop()
        options = self.server.create_initialization_options(NotificationOptions(tools_changed=True))
        channel = await open_stdio(sys.stdin.buffer, out, McpMessages(served_methods(self.server)))
        to_server, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        outgoing, from_server = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.core.warn_of_failures)
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


def serve_mcp(core: Core, out: BinaryIO) -> int:
    """Serve MCP over `core` on stdin and `out` (the protocol's own copy of stdout) until the
    client closes stdin."""
    face = McpFace(core)
    core.subscribe(face.notify_changed)
    anyio.run(face.serve, out)
    return 0
