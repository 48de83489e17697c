"""One typed client per face, over the real daemon process: LSP (`serve`), ACP (`acp`), MCP (`mcp`).

Each has the same surface: `list_tools()`, `invoke(name, arguments)`, `run_agent(prompt, **options)`
and `request(method, params)` (raw), and each raises the one `RpcError(code, message, data)` for an
error answer, so one test can put the same question to every face. Where a face cannot express a
question it says so with NotImplementedError: ACP has no tool listing or call of its own (tools run
within a prompt), MCP has no agent run (an MCP client brings its own model).

Underneath are the clients the faces' users have: tests/rpc.py's strict `DaemonSession` for LSP,
the ACP SDK's client connection, the MCP SDK's `ClientSession`. The two line faces go through a
strict line channel of their own: every line the daemon writes must be a JSON object (anything
else is recorded in `violations`, and fails the test when the client closes), and raw requests,
any params at all, are sent and answered beside the SDK's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import acp
import anyio
from acp import schema as acp_schema
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from llama_agent.config import REPO_ROOT
from mcp import ClientSession
from mcp import types as mcp_types
from mcp.client.session import ElicitationFnT
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from tests.rpc import DEFAULT_TIMEOUT, DaemonSession, RpcError

__all__ = [
    "OMITTED",
    "AcpClient",
    "AcpEditor",
    "CallOutcome",
    "DaemonLaunch",
    "Face",
    "FaceClient",
    "LspClient",
    "McpClient",
    "RpcError",
    "RunOutcome",
    "Step",
    "ToolInfo",
    "open_acp_client",
    "open_client",
    "open_lsp_client",
    "open_mcp_client",
    "run_cli",
    "start_lsp_daemon",
]

Face = Literal["lsp", "acp", "mcp"]
FACES: tuple[Face, ...] = ("lsp", "acp", "mcp")
LLAMA_AGENT = str(Path(sys.executable).with_name("llama-agent"))
# Longest line read from a line face: well past any answer the daemon may send.
MAX_LINE_BYTES = 64 * 1024 * 1024


def run_cli(*args: str | Path, config_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`llama-agent ARGS` as a person runs it, stdin not a terminal; with `config_dir`, that
    directory holds its grants file."""
    env = {**os.environ, "LLAMA_AGENT_CONFIG_DIR": str(config_dir)} if config_dir else None
    return subprocess.run(
        [LLAMA_AGENT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )


class _Omitted:
    """The marker of a member left out of a message (None is sent as null)."""

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED: Any = _Omitted()


# -- what every face answers, typed ------------------------------------------------------------


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str
    input_schema: dict[str, Any]
    raw: dict[str, Any]  # the face's own description of the tool, for what only that face says


@dataclass(frozen=True)
class CallOutcome:
    texts: list[str]
    is_error: bool
    raw: dict[str, Any]  # the face's own result

    @property
    def text(self) -> str:
        return "".join(self.texts)


@dataclass(frozen=True)
class Step:
    """One tool call of an agent run, as the face reported it."""

    tool: str
    arguments: Any
    result: str
    is_error: bool


@dataclass(frozen=True)
class RunOutcome:
    answer: str
    stop_reason: str  # in the face's own words: LSP's "answer", "maxSteps"...; ACP's "end_turn"...
    steps: list[Step]
    raw: Any  # LSP: agent/run's result; ACP: the PromptResponse
    # LSP: the run's $/progress values; ACP: the prompt's session updates
    updates: list[Any] = field(default_factory=list)


class FaceClient(Protocol):
    """What the three clients have in common."""

    @property
    def face(self) -> Face: ...

    async def list_tools(self) -> list[ToolInfo]: ...

    async def invoke(self, name: str, arguments: Any = OMITTED) -> CallOutcome: ...

    async def run_agent(self, prompt: str, **options: Any) -> RunOutcome: ...

    async def request(self, method: str, params: Any = OMITTED) -> Any: ...


# -- how the tests start a daemon --------------------------------------------------------------


@dataclass(frozen=True)
class DaemonLaunch:
    """How the tests start daemons: with their shared compile cache (`--cache-dir`), their own
    config directory (`LLAMA_AGENT_CONFIG_DIR`, where grants.toml lives), and a scratch directory
    of theirs for the scripts of scripted models (and, in ACP, the sessions' default folder)."""

    cache_dir: Path
    config_dir: Path
    scratch: Path

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "LLAMA_AGENT_CONFIG_DIR": str(self.config_dir), **(extra or {})}

    def command(self, face: Literal["serve", "acp", "mcp"], script: Mapping[str, Any] | None) -> list[str]:
        """The program and its face; with `script` (a ScriptedModel spec, {"turns": [...], ...}),
        the daemon with that scripted model in place of llama.cpp (tests/scripted_daemon.py)."""
        if script is None:
            return [LLAMA_AGENT, face]
        if face == "mcp":
            raise ValueError("the MCP face runs no model: it takes no script")
        script_file = self.scratch / f"script-{next(_script_numbers)}.json"
        script_file.write_text(json.dumps(script))
        scripted = [sys.executable, "-m", "tests.scripted_daemon", str(script_file)]
        return scripted + (["acp"] if face == "acp" else [])

    def scripted_env(
        self, script: Mapping[str, Any] | None, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        return self.env({"PYTHONPATH": str(REPO_ROOT), **(extra or {})} if script is not None else extra)


_script_numbers = itertools.count(1)
_raw_ids = itertools.count(1)


def _raw_message(request_id: str, method: str, params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not OMITTED:
        message["params"] = params
    return message


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# -- LSP ---------------------------------------------------------------------------------------


class LspClient:
    """The LSP face (`llama-agent serve`) through tests/rpc.py's strict `DaemonSession`
    (`daemon`, for what only LSP has: progress, server requests, cancellation)."""

    face: Face = "lsp"

    def __init__(self, daemon: DaemonSession) -> None:
        self.daemon = daemon
        self._tokens = itertools.count(1)

    async def list_tools(self) -> list[ToolInfo]:
        result = await self.daemon.request("tools/list")
        return [
            ToolInfo(tool["name"], tool.get("description") or "", tool["inputSchema"], tool)
            for tool in result["tools"]
        ]

    async def invoke(self, name: str, arguments: Any = OMITTED) -> CallOutcome:
        params: dict[str, Any] = {"name": name}
        if arguments is not OMITTED:
            params["arguments"] = arguments
        result = await self.daemon.request("tools/invoke", params)
        return CallOutcome([block["text"] for block in result["content"]], bool(result["isError"]), result)

    async def run_agent(self, prompt: str, **options: Any) -> RunOutcome:
        """`agent/run`; options in snake case (max_steps=2, tool_choice="echo", seed=5...) become
        its camel-case params. The run reports its progress on `work_done_token`, one of the
        client's own unless given; those reports are the outcome's `updates`."""
        params = {"prompt": prompt, **{_camel(key): value for key, value in options.items()}}
        token = params.setdefault("workDoneToken", f"run-{next(self._tokens)}")
        result = await self.daemon.request("agent/run", params)
        steps = [Step(s["tool"], s["arguments"], s["result"], s["isError"]) for s in result["steps"]]
        updates = self.daemon.progress(token) if token is not None else []
        return RunOutcome(result["answer"], result["stopReason"], steps, result, updates)

    async def request(self, method: str, params: Any = OMITTED) -> Any:
        request_id = f"raw-{next(_raw_ids)}"
        answer = self.daemon.expect_response(request_id)
        self.daemon.send(_raw_message(request_id, method, params))
        return await asyncio.wait_for(answer, DEFAULT_TIMEOUT)


async def start_lsp_daemon(
    launch: DaemonLaunch,
    *args: str | Path,
    script: Mapping[str, Any] | None = None,
    initialize: bool = True,
    init_params: dict[str, Any] | None = None,
    eager_model: bool = False,
    env: Mapping[str, str] | None = None,
) -> DaemonSession:
    """`llama-agent serve ARGS` (with `script`: the scripted model's), initialized unless
    `initialize=False`, its model loaded on the first agent/run (`--lazy-model`) unless
    `eager_model`."""
    lazy = [] if eager_model else ["--lazy-model"]
    return await DaemonSession.open(
        ["--cache-dir", str(launch.cache_dir), *lazy, *map(str, args)],
        initialize=initialize,
        init_params=init_params,
        env=launch.scripted_env(script, env),
        command=launch.command("serve", script) if script is not None else None,
    )


@asynccontextmanager
async def open_lsp_client(
    launch: DaemonLaunch, *args: str | Path, **options: Any
) -> AsyncIterator[LspClient]:
    """The client of `start_lsp_daemon(launch, *args, **options)`; the daemon is killed at the end,
    and then checked for bytes on stdout that were not protocol frames."""
    daemon = await start_lsp_daemon(launch, *args, **options)
    try:
        yield LspClient(daemon)
    finally:
        await daemon.kill()
    assert daemon.violations == [], daemon.violations


# -- the line faces' channel -------------------------------------------------------------------


class LineChannel:
    """A daemon's stdio as one JSON-RPC message per line, read strictly: a line that is not a JSON
    object is recorded in `violations`. Answers to raw requests (ids "raw-N") are taken here; every
    other message goes on to the SDK through `deliver`."""

    def __init__(
        self, process: asyncio.subprocess.Process, deliver: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> None:
        self.process = process
        self.violations: list[str] = []
        self.stderr = bytearray()
        self._deliver = deliver
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ended = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_stdout())
        self._stderr_reader = asyncio.ensure_future(self._read_stderr())

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        env: Mapping[str, str],
        deliver: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> LineChannel:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            limit=MAX_LINE_BYTES,
        )
        return cls(process, deliver)

    def send(self, message: Mapping[str, Any]) -> None:
        """One message, one line (written whole, so never interleaved with another)."""
        stdin = self.process.stdin
        assert stdin is not None
        if not stdin.is_closing():
            stdin.write(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: Any = OMITTED) -> Any:
        if self._ended.is_set():
            raise ConnectionError("the daemon's output has ended: it answers nothing more")
        request_id = f"raw-{next(_raw_ids)}"
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        self.send(_raw_message(request_id, method, params))
        try:
            return await asyncio.wait_for(answer, DEFAULT_TIMEOUT)
        finally:
            self._pending.pop(request_id, None)

    async def ended(self) -> None:
        """Until the daemon's stdout ends."""
        await self._ended.wait()

    async def close(self) -> None:
        """End the daemon's input, give it a moment to leave, then kill it."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        for task in (self._reader, self._stderr_reader):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 5)
            task.cancel()

    async def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        try:
            while line := await stream.readline():
                await self._take(line)
        finally:
            self._ended.set()
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError("the daemon's output ended before its answer"))

    async def _take(self, line: bytes) -> None:
        if not line.endswith(b"\n"):
            self.violations.append(f"unterminated last line: {line[:200]!r}")
        try:
            message = json.loads(line)
        except ValueError:
            self.violations.append(f"not JSON on stdout: {line[:200]!r}")
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self.violations.append(f"not a JSON-RPC 2.0 message: {line[:200]!r}")
            return
        answer = self._pending.get(message.get("id")) if "method" not in message else None  # type: ignore[arg-type]
        if answer is None:
            await self._deliver(message)
        elif not answer.done():
            if "error" in message:
                error = message["error"]
                answer.set_exception(RpcError(error["code"], error["message"], error.get("data")))
            else:
                answer.set_result(message.get("result"))

    async def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            self.stderr.extend(chunk)


@contextlib.contextmanager
def _as_rpc_errors() -> Iterator[None]:
    """The SDKs' error answers as the one RpcError; a request on a connection that has ended as
    a ConnectionError, as the line channel's own."""
    try:
        yield
    except acp.RequestError as error:
        raise RpcError(error.code, str(error), error.data) from error
    except McpError as error:
        raise RpcError(error.error.code, error.error.message, error.error.data) from error
    except (anyio.ClosedResourceError, anyio.BrokenResourceError) as error:
        raise ConnectionError("the connection to the daemon has ended") from error


# -- ACP ---------------------------------------------------------------------------------------


PermissionChoice = str | None  # an option's id; None: the person dismissed the question


class AcpEditor:
    """The editor's side of ACP: records every session update, and answers each permission
    request with the next of `choices` (None: the person dismissed the question; once they run
    out, every question is dismissed). `asked` holds the questions."""

    def __init__(self, choices: Sequence[PermissionChoice] = ()) -> None:
        self.updates: list[Any] = []
        self.asked: list[acp_schema.ToolCallUpdate] = []
        self.asked_options: list[list[acp_schema.PermissionOption]] = []
        self.choices = list(choices)

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(update)

    async def request_permission(
        self,
        options: list[acp_schema.PermissionOption],
        session_id: str,
        tool_call: acp_schema.ToolCallUpdate,
        **kwargs: Any,
    ) -> acp_schema.RequestPermissionResponse:
        self.asked.append(tool_call)
        self.asked_options.append(options)
        choice = self.choices.pop(0) if self.choices else None
        assert choice is None or choice in {option.option_id for option in options}, choice
        outcome: acp_schema.DeniedOutcome | acp_schema.AllowedOutcome = (
            acp_schema.DeniedOutcome(outcome="cancelled")
            if choice is None
            else acp_schema.AllowedOutcome(outcome="selected", option_id=choice)
        )
        return acp_schema.RequestPermissionResponse(outcome=outcome)

    def of_kind(self, kind: str, updates: Sequence[Any] | None = None) -> list[Any]:
        return [
            update
            for update in (self.updates if updates is None else updates)
            if update.session_update == kind
        ]

    def said(self, updates: Sequence[Any] | None = None) -> str:
        return "".join(update.content.text for update in self.of_kind("agent_message_chunk", updates))


class _ChannelTransport:
    """The ACP SDK's message transport over a LineChannel."""

    def __init__(self) -> None:
        self.channel: LineChannel | None = None
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def deliver(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(message)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.channel is not None
        self.channel.send(message)

    async def receive(self) -> dict[str, Any] | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)


def _acp_steps(updates: Sequence[Any]) -> list[Step]:
    """The tool calls of a prompt: each `tool_call` with the last update of the same call."""
    started = [update for update in updates if update.session_update == "tool_call"]
    finished = {u.tool_call_id: u for u in updates if u.session_update == "tool_call_update" and u.status}
    steps = []
    for call in started:
        end = finished.get(call.tool_call_id)
        result = ""
        if end is not None:
            result = end.raw_output if isinstance(end.raw_output, str) else _content_text(end.content)
        is_error = end is not None and end.status == "failed"
        steps.append(Step(call.title, call.raw_input, result, is_error))
    return steps


def _content_text(content: Sequence[Any] | None) -> str:
    return "".join(
        item.content.text for item in content or [] if getattr(getattr(item, "content", None), "text", None)
    )


class AcpClient:
    """The ACP face (`llama-agent acp`) through the ACP SDK's client connection (`conn`), with
    `editor` answering what the agent asks. Prompts go to one session in `cwd`, opened on the
    first prompt, unless `run_agent(..., session_id=...)` names another."""

    face: Face = "acp"

    def __init__(
        self, conn: acp.ClientSideConnection, channel: LineChannel, editor: AcpEditor, cwd: Path
    ) -> None:
        self.conn = conn
        self.channel = channel
        self.editor = editor
        self.cwd = cwd
        self.initialize_result: acp.InitializeResponse | None = None
        self._session: str | None = None

    async def list_tools(self) -> list[ToolInfo]:
        raise NotImplementedError("ACP has no tool listing: an ACP agent's tools run only within a prompt")

    async def invoke(self, name: str, arguments: Any = OMITTED) -> CallOutcome:
        raise NotImplementedError(
            "ACP has no tool call of its own: an ACP agent's tools run only within a prompt"
        )

    async def new_session(self, cwd: Path | str | None = None) -> str:
        with _as_rpc_errors():
            opened = await self.conn.new_session(cwd=str(self.cwd if cwd is None else cwd), mcp_servers=[])
        session_id: str = opened.session_id
        return session_id

    async def run_agent(self, prompt: str, **options: Any) -> RunOutcome:
        """`session/prompt` with `prompt` as one text block; the only option is `session_id`
        (ACP's prompt takes no agent options)."""
        session_id = options.pop("session_id", None)
        if options:
            raise TypeError(f"ACP's session/prompt takes no options such as {sorted(options)}")
        if session_id is None:
            if self._session is None:
                self._session = await self.new_session()
            session_id = self._session
        seen = len(self.editor.updates)
        with _as_rpc_errors():
            done = await self.conn.prompt(session_id=session_id, prompt=[acp.text_block(prompt)])
        updates = self.editor.updates[seen:]
        return RunOutcome(self.editor.said(updates), done.stop_reason, _acp_steps(updates), done, updates)

    async def request(self, method: str, params: Any = OMITTED) -> Any:
        return await self.channel.request(method, params)


@asynccontextmanager
async def open_acp_client(
    launch: DaemonLaunch,
    *args: str | Path,
    script: Mapping[str, Any] | None = None,
    editor: AcpEditor | None = None,
    cwd: Path | None = None,
    initialize: bool = True,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[AcpClient]:
    """`llama-agent acp ARGS` (with `script`: the scripted model's), initialized unless
    `initialize=False`; its input closed at the end, then checked for lines that were not
    JSON-RPC messages."""
    editor = editor or AcpEditor()
    command = [*launch.command("acp", script), "--cache-dir", str(launch.cache_dir), *map(str, args)]
    transport = _ChannelTransport()
    channel = await LineChannel.start(command, launch.scripted_env(script, env), transport.deliver)
    transport.channel = channel
    ended = asyncio.ensure_future(_close_inbox_at_end(channel, transport))
    conn = acp.connect_to_agent(
        cast(acp.Client, editor), transport
    )  # the SDK calls the editor's methods by name
    client = AcpClient(conn, channel, editor, cwd or launch.scratch)
    try:
        if initialize:
            with _as_rpc_errors():
                client.initialize_result = await conn.initialize(protocol_version=acp.PROTOCOL_VERSION)
        yield client
    finally:
        await conn.close()
        await channel.close()
        ended.cancel()
    assert channel.violations == [], channel.violations


async def _close_inbox_at_end(channel: LineChannel, transport: _ChannelTransport) -> None:
    await channel.ended()
    await transport.close()


# -- MCP ---------------------------------------------------------------------------------------


class McpClient:
    """The MCP face (`llama-agent mcp`) through the MCP SDK's `ClientSession` (`session`).
    `notifications` holds what the server notified (e.g. ToolListChangedNotification)."""

    face: Face = "mcp"

    def __init__(self, session: ClientSession, channel: LineChannel) -> None:
        self.session = session
        self.channel = channel
        self.notifications: list[Any] = []
        self.initialize_result: mcp_types.InitializeResult | None = None
        self._notified = asyncio.Condition()

    async def list_tools(self) -> list[ToolInfo]:
        with _as_rpc_errors():
            listed = await self.session.list_tools()
        return [
            ToolInfo(
                tool.name,
                tool.description or "",
                tool.inputSchema,
                tool.model_dump(mode="json", by_alias=True),
            )
            for tool in listed.tools
        ]

    async def invoke(self, name: str, arguments: Any = OMITTED) -> CallOutcome:
        """`tools/call` through the SDK; `arguments` that the SDK cannot send (not an object:
        null, [], a string...) go as they are, as a raw request."""
        if arguments is OMITTED or isinstance(arguments, dict):
            with _as_rpc_errors():
                called = await self.session.call_tool(name, None if arguments is OMITTED else arguments)
        else:
            answer = await self.request("tools/call", {"name": name, "arguments": arguments})
            called = mcp_types.CallToolResult.model_validate(answer)
        texts = [block.text for block in called.content if isinstance(block, mcp_types.TextContent)]
        return CallOutcome(texts, called.isError, called.model_dump(mode="json", by_alias=True))

    async def run_agent(self, prompt: str, **options: Any) -> RunOutcome:
        raise NotImplementedError(
            "MCP has no agent run: an MCP client brings its own model and calls the tools"
        )

    async def request(self, method: str, params: Any = OMITTED) -> Any:
        return await self.channel.request(method, params)

    async def on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ServerNotification):
            async with self._notified:
                self.notifications.append(message.root)
                self._notified.notify_all()

    async def wait_for_notification(
        self, kind: type[Any], after: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """The first notification of class `kind` with index >= `after`."""

        def found() -> Any:
            return next((n for n in self.notifications[after:] if isinstance(n, kind)), None)

        async with self._notified:
            await asyncio.wait_for(self._notified.wait_for(lambda: found() is not None), timeout)
        return found()


class _SessionStreams:
    """The memory streams a ClientSession reads and writes, joined to a LineChannel."""

    def __init__(self) -> None:
        self.incoming: tuple[
            MemoryObjectSendStream[SessionMessage | Exception],
            MemoryObjectReceiveStream[SessionMessage | Exception],
        ]
        self.incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        self.outgoing: tuple[
            MemoryObjectSendStream[SessionMessage], MemoryObjectReceiveStream[SessionMessage]
        ]
        self.outgoing = anyio.create_memory_object_stream[SessionMessage](0)

    async def deliver(self, message: dict[str, Any]) -> None:
        """A message from the daemon, as the SDK's own stdio transport passes it on."""
        try:
            parsed: SessionMessage | Exception = SessionMessage(
                mcp_types.JSONRPCMessage.model_validate(message)
            )
        except ValidationError as error:
            parsed = error
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.incoming[0].send(parsed)

    async def write_all(self, channel: LineChannel) -> None:
        async with self.outgoing[1]:
            async for message in self.outgoing[1]:
                channel.send(message.message.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def end_at(self, channel: LineChannel) -> None:
        """When the daemon's output ends, so does the session's input: its requests fail."""
        await channel.ended()
        await self.incoming[0].aclose()

    async def close(self) -> None:
        await self.incoming[0].aclose()
        await self.outgoing[0].aclose()


@asynccontextmanager
async def open_mcp_client(
    launch: DaemonLaunch,
    *args: str | Path,
    elicitation: ElicitationFnT | None = None,
    initialize: bool = True,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[McpClient]:
    """`llama-agent mcp ARGS`, initialized unless `initialize=False`, declaring the elicitation
    capability when given its `elicitation` callback; its input closed at the end, then checked
    for lines that were not JSON-RPC messages."""
    streams = _SessionStreams()
    command = [*launch.command("mcp", None), "--cache-dir", str(launch.cache_dir), *map(str, args)]
    channel = await LineChannel.start(command, launch.env(env), streams.deliver)
    writing = asyncio.ensure_future(streams.write_all(channel))
    ending = asyncio.ensure_future(streams.end_at(channel))
    client: McpClient | None = None
    try:
        async with ClientSession(
            streams.incoming[1],
            streams.outgoing[0],
            elicitation_callback=elicitation,
            message_handler=lambda message: _on_message(client, message),
        ) as session:
            client = McpClient(session, channel)
            if initialize:
                with _as_rpc_errors():
                    client.initialize_result = await session.initialize()
            yield client
    finally:
        await streams.close()
        await channel.close()
        writing.cancel()
        ending.cancel()
    assert channel.violations == [], channel.violations


async def _on_message(client: McpClient | None, message: Any) -> None:
    if client is not None:
        await client.on_message(message)


# -- any face ----------------------------------------------------------------------------------


def open_client(
    launch: DaemonLaunch, face: Face, *args: str | Path, **options: Any
) -> AbstractAsyncContextManager[FaceClient]:
    """The client of `face`, started with ARGS (and the face's own options: `script`, ...)."""
    openers: dict[Face, Callable[..., AbstractAsyncContextManager[Any]]] = {
        "lsp": open_lsp_client,
        "acp": open_acp_client,
        "mcp": open_mcp_client,
    }
    return openers[face](launch, *args, **options)


# The e2e fixtures `lsp_client`, `acp_client`, `mcp_client` and `face_client`: these openers,
# bound to the test's DaemonLaunch.
OpenLspClient = Callable[..., AbstractAsyncContextManager[LspClient]]
OpenAcpClient = Callable[..., AbstractAsyncContextManager[AcpClient]]
OpenMcpClient = Callable[..., AbstractAsyncContextManager[McpClient]]
OpenFaceClient = Callable[..., AbstractAsyncContextManager[FaceClient]]
