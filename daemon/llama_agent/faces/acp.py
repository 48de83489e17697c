"""The ACP face: llama-agent as the agent inside Zed, JetBrains or Neovim's agent plugins.

A thin adapter over the composition root (Agent Client Protocol, version 1, one JSON-RPC
message per line on stdio, through the `agent-client-protocol` SDK over the bounded, strictly
parsed lines of llama_agent.faces.wire.lines): `session/new` opens a session on the core whose
workspace is its `cwd`, `session/prompt` runs the agent loop in it, as one conversation (each
prompt sees the ones before), and streams `session/update`s (the answer's text, each tool call
and its result), `session/cancel` ends the turn with
`cancelled`, and a call that may write runs only once the person allows it: the session asks with
`session/request_permission`, sent after the `tool_call` update of that call, with the paths it
names (`locations`) and what it would write (a diff, or the text). At most MAX_SESSIONS sessions
are held.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import os
import stat
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import acp
from acp import schema
from pydantic import BaseModel, ValidationError

from llama_agent import __version__
from llama_agent.common.errors import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    AgentError,
    InvalidParams,
    MethodNotFound,
    NotInitialized,
    TooManySessions,
)
from llama_agent.common.text import quoted, visible
from llama_agent.core import Core
from llama_agent.faces.wire.jsonrpc import (
    Rejection,
    agent_error,
    brief,
    encode_json,
    explain,
    message_id,
    rejection,
)
from llama_agent.faces.wire.lines import open_stdio
from llama_agent.services.agent.history import AgentStep
from llama_agent.services.agent.loop import AgentRequest, StopReason
from llama_agent.services.agent.turns import AnswerStream
from llama_agent.services.consent.calls import CannotAsk, Choice, ConsentRequest
from llama_agent.services.sessions import Session
from llama_agent.services.tools.registry import Tool

log = logging.getLogger(__name__)

STOP_REASONS: dict[StopReason, schema.StopReason] = {
    "answer": "end_turn",
    "maxSteps": "max_turn_requests",
    "maxTokens": "max_tokens",
    "repetition": "max_tokens",
    "invalidTurn": "end_turn",
}
# Sessions held at once: past this, `session/new` closes the least recently used idle one.
MAX_SESSIONS = 64
# Arguments shown to the person are made visible this deep; deeper, each value as one string.
MAX_SHOWN_DEPTH = 32
PERMISSION_OPTIONS = [
    schema.PermissionOption(option_id=Choice.ALLOW_ONCE.value, name="Allow once", kind="allow_once"),
    schema.PermissionOption(
        option_id=Choice.ALLOW_ALWAYS.value,
        name="Always allow this tool in this session",
        kind="allow_always",
    ),
    schema.PermissionOption(option_id="reject-once", name="Reject", kind="reject_once"),
]
# How a call the stopped prompt left open is closed (ACP's tool calls have no "cancelled" status:
# it is "failed", saying so), while its question was open, or while it ran.
CANCELLED_UNASKED = (
    "cancelled: the prompt was stopped before the person answered; not run, nothing was written"
)
CANCELLED_RUNNING = "cancelled: the prompt was stopped while the call ran"
# What stays as it is in a text shown in full (a file's content): line breaks and tabs.
LINES = "\n\t"
CHOICES = {Choice.ALLOW_ONCE.value: Choice.ALLOW_ONCE, Choice.ALLOW_ALWAYS.value: Choice.ALLOW_ALWAYS}


def tool_kind(tool: Tool | None) -> schema.ToolKind:
    if tool is None or not (tool.grants.dirs or tool.workspace):
        return "other"
    return "edit" if tool.writes else "read"


def permission_request(request: ConsentRequest, call_id: str) -> schema.ToolCallUpdate:
    """What the person is asked: which tool, from which file, may write where (`locations`: the
    host paths its path arguments lead to), with what (a diff when it writes a whole file's text,
    else the text of each string argument). Every string in it made visible, so that an escape
    sequence in a directory's name (or in an argument) cannot redraw the question."""
    content: list[Any] = [acp.tool_content(acp.text_block(request.detail()))]
    whole = request.whole_file
    if whole is not None:
        old = None if whole.old_text is None else visible(whole.old_text, LINES)
        content.append(acp.tool_diff_content(visible(str(whole.path)), visible(whole.new_text, LINES), old))
    else:
        content += [
            acp.tool_content(acp.text_block(f"{visible(text.argument)}:\n{text.shown(keep=LINES)}"))
            for text in request.texts
        ]
    hosts = [path.host for path in request.paths if path.host is not None]
    return schema.ToolCallUpdate(
        tool_call_id=call_id,
        title=request.title(),
        kind="edit",
        content=content,
        locations=[schema.ToolCallLocation(path=visible(str(host))) for host in hosts] or None,
        raw_input=visible_json(request.arguments),
    )


def visible_json(value: Any, depth: int = 0) -> Any:
    """`value` with every string in it, keys too, made visible (deep down, as one string)."""
    if isinstance(value, str):
        return visible(value)
    if depth > MAX_SHOWN_DEPTH and isinstance(value, dict | list):
        return visible(encode_json(value))
    if isinstance(value, dict):
        return {visible(str(key)): visible_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [visible_json(item, depth + 1) for item in value]
    return value


def invalid_params(field: str, reason: str) -> InvalidParams:
    """-32602 naming the field, with the reason in the message (`acp_error`)."""
    return InvalidParams(f"{field}: {reason}", field)


def acp_error(error: AgentError) -> acp.RequestError:
    """The daemon's error as ACP answers it: its code, and its readable message as the message,
    which is all that ACP clients show (the SDK's own errors say only "Invalid params" or
    "Internal error" and put the reason in `data`)."""
    return acp.RequestError(error.code, error.message, error.data)


class AnsweringErrors:
    """The face as the SDK calls it: whatever one of its methods raises is answered as every face
    answers it (`acp_error`: an internal error is logged and names only its type)."""

    def __init__(self, face: object) -> None:
        self._face = face

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._face, name)  # AttributeError: the SDK answers "method not found"
        if not inspect.iscoroutinefunction(method):
            return method

        @functools.wraps(method)  # the SDK reads the method's signature
        async def answering(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except acp.RequestError:
                raise
            except AgentError as error:
                log.warning("refusing ACP's %s: %s", name, error.message)
                raise acp_error(error) from error
            except Exception as error:
                raise acp_error(agent_error(error, f"ACP's {name}")) from error

        return answering


# Every ACP request and notification the face may serve: the SDK's model of its params, and the
# face's method for it (a method the face lacks is not served).
ACP_REQUESTS: dict[str, tuple[type[BaseModel], str]] = {
    "initialize": (schema.InitializeRequest, "initialize"),
    "authenticate": (schema.AuthenticateRequest, "authenticate"),
    "session/new": (schema.NewSessionRequest, "new_session"),
    "session/load": (schema.LoadSessionRequest, "load_session"),
    "session/list": (schema.ListSessionsRequest, "list_sessions"),
    "session/set_mode": (schema.SetSessionModeRequest, "set_session_mode"),
    "session/prompt": (schema.PromptRequest, "prompt"),
}
ACP_NOTIFICATIONS: dict[str, tuple[type[BaseModel], str]] = {
    "session/cancel": (schema.CancelNotification, "cancel"),
}


class AcpMessages:
    """What the ACP face answers itself, before the SDK sees a message (each line, through
    llama_agent.faces.wire.lines): as on the other faces, an unknown method is -32601 naming it, a
    request before `initialize` -32002, params that do not fit -32602 naming the field and the
    reason in the message (the SDK would answer "Invalid params" with pydantic's report in
    `data`); missing, null or empty-array params are none. A `session/cancel` also goes to
    `on_cancel` as soon as it is read: a client's answer read after it (to the stopped prompt's
    permission question, say) is then never acted on, whenever the SDK gets to it."""

    def __init__(self, face: object, on_cancel: Callable[[str], None] | None = None) -> None:
        def served(methods: dict[str, tuple[type[BaseModel], str]]) -> dict[str, type[BaseModel]]:
            return {method: model for method, (model, name) in methods.items() if hasattr(face, name)}

        self._requests = served(ACP_REQUESTS)
        self._notifications = served(ACP_NOTIFICATIONS)
        self._initialized = False
        self._on_cancel = on_cancel

    def __call__(self, message: dict[str, Any]) -> Rejection | dict[str, Any]:
        method = message.get("method")
        if not isinstance(method, str):
            return message  # a response to one of the face's requests
        is_request = "id" in message
        request_id = message_id(message.get("id"))
        model = (self._requests if is_request else self._notifications).get(method)
        if model is None:
            if is_request:
                return rejection(MethodNotFound(brief(method)), request_id)
            return Rejection(METHOD_NOT_FOUND, f"no such notification: {brief(method)}", answer=False)
        if is_request and not self._initialized and method != "initialize":
            return rejection(NotInitialized(), request_id)
        if message.get("params") in (None, []):
            message = {**message, "params": {}}
        try:
            model.model_validate(message["params"])
        except ValidationError as error:
            reason = f"invalid params for {brief(method)}: {explain(error)}"
            return Rejection(INVALID_PARAMS, reason, request_id, answer=is_request)
        self._initialized = self._initialized or method == "initialize"
        if method == "session/cancel" and not is_request and self._on_cancel is not None:
            self._on_cancel(message["params"]["sessionId"])  # a string: validated above
        return message


def session_folder(cwd: str) -> Path:
    """`cwd` as a session's folder: an absolute path to a directory, else `-32602` saying why."""
    folder = Path(cwd)
    shown = quoted(brief(cwd, 200))
    if not folder.is_absolute():
        raise invalid_params("cwd", f"not an absolute path: {shown}")
    try:
        info = os.stat(folder)
    except (OSError, ValueError) as error:  # ValueError: a NUL byte
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise invalid_params("cwd", f"cannot use {shown} as the session's folder: {reason}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise invalid_params("cwd", f"not a directory: {shown}")
    return folder


class AcpSession:
    """One ACP session: its session on the core (whose workspace is the session's `cwd`), the
    prompt it runs, and its way of asking the person (`session/request_permission`)."""

    def __init__(self, core: Core, client: acp.Client, session_id: str, cwd: Path) -> None:
        self.client = client
        self.session_id = session_id
        self.session = core.open_session(workspace=cwd, asker=self)
        # ACP's session is one chat: its prompts are one conversation (a client sends only the
        # new message), and a cancelled prompt is recorded as such.
        self.conversation = self.session.conversations.new(session_id)
        self.running: asyncio.Task[Any] | None = None
        self.updates: SessionUpdates | None = None  # the running prompt's

    async def ask(self, request: ConsentRequest) -> Choice:
        """Asked about a call of the running prompt once its `tool_call` update has been sent:
        the question carries that call's id."""
        updates = self.updates
        if updates is None or request.step is None:  # ACP makes no call but a prompt's
            raise CannotAsk("no prompt of this session made the call")
        await updates.sent()
        call = permission_request(request, updates.call_id(request.step))
        # Marked until answered: a prompt stopped meanwhile closes the call as never run.
        updates.asking(request.step, True)
        try:
            answer = await self.client.request_permission(
                session_id=self.session_id, tool_call=call, options=PERMISSION_OPTIONS
            )
        except acp.RequestError as error:
            updates.asking(request.step, False)
            raise CannotAsk(f"the client could not ask: {visible(str(error))}") from error
        updates.asking(request.step, False)
        chosen = answer.outcome.option_id if isinstance(answer.outcome, schema.AllowedOutcome) else None
        return CHOICES.get(chosen or "", Choice.REJECT)


class SessionUpdates:
    """`AgentEvents` for one prompt, as ACP session updates sent in order."""

    def __init__(self, client: acp.Client, session_id: str, session: Session, prompt_id: str) -> None:
        self._client = client
        self._session_id = session_id
        self._session = session
        self._prompt_id = prompt_id
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_all())
        self._answer = AnswerStream()
        self._open: set[int] = set()  # calls announced and not yet finished
        self._asking: set[int] = set()  # ... of which the person is being asked about

    def call_id(self, index: int) -> str:
        return f"{self._prompt_id}-call-{index}"

    def on_turn_start(self, index: int) -> None:
        self._answer = AnswerStream()

    def on_text(self, text: str) -> None:
        said = self._answer.feed(text)  # each piece read once: no re-reading of the whole turn
        if said:
            self._queue.put_nowait(acp.update_agent_message_text(said))

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        loaded = self._session.toolbox.snapshot.tools.get(tool)
        loaded = self._session.tool_view(loaded) if loaded is not None else None  # as it is called
        update = acp.start_tool_call(
            self.call_id(index),
            visible(tool),
            kind=tool_kind(loaded),
            status="in_progress",
            raw_input=visible_json(arguments),
        )
        self._queue.put_nowait(update)
        self._open.add(index)

    def asking(self, index: int, open_question: bool) -> None:
        if open_question:
            self._asking.add(index)
        else:
            self._asking.discard(index)

    def close_cancelled_calls(self) -> None:
        """Close each call the stopped prompt left open, as failed, saying it was cancelled (and,
        if its question was still open, that it did not run): a client shows no call as running
        after the turn, and the person reads that nothing was written."""
        for index in sorted(self._open):
            text = CANCELLED_UNASKED if index in self._asking else CANCELLED_RUNNING
            update = acp.update_tool_call(
                self.call_id(index),
                status="failed",
                content=[acp.tool_content(acp.text_block(text))],
                raw_output=text,
            )
            self._queue.put_nowait(update)
        self._open.clear()

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        self._open.discard(index)
        update = acp.update_tool_call(
            self.call_id(index),
            status="failed" if step.is_error else "completed",
            content=[acp.tool_content(acp.text_block(step.result))],
            raw_output=step.result,
        )
        self._queue.put_nowait(update)

    async def _send_all(self) -> None:
        while True:
            update = await self._queue.get()
            try:
                await self._client.session_update(session_id=self._session_id, update=update)
            except Exception as error:  # a client that is gone: nothing more to tell it
                log.warning("session update not sent: %s", error)
            finally:
                self._queue.task_done()

    async def sent(self) -> None:
        """Return once every update queued so far has been sent."""
        await self._queue.join()

    async def close(self) -> None:
        """Send what is queued, then stop."""
        await self._queue.join()
        self._sender.cancel()


class AcpFace:
    """The agent side of ACP (the SDK dispatches to these methods by name; others it answers
    with "method not found")."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._client: acp.Client | None = None
        self._sessions: OrderedDict[str, AcpSession] = OrderedDict()  # least recently used first
        self._ids = itertools.count(1)

    def on_connect(self, conn: acp.Client) -> None:
        self._client = conn

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: schema.ClientCapabilities | None = None,
        client_info: schema.Implementation | None = None,
        **kwargs: Any,
    ) -> acp.InitializeResponse:
        return acp.InitializeResponse(
            protocol_version=acp.PROTOCOL_VERSION,
            agent_capabilities=schema.AgentCapabilities(load_session=False),
            agent_info=schema.Implementation(name="llama-agent", title="Llama Agent", version=__version__),
            auth_methods=[],
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> acp.AuthenticateResponse | None:
        return acp.AuthenticateResponse()

    async def new_session(
        self,
        cwd: str,
        additional_directories: list[str] | None = None,
        mcp_servers: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> acp.NewSessionResponse:
        folder = session_folder(cwd)
        self._make_room()
        session_id = f"session-{next(self._ids)}"
        assert self._client is not None
        self._sessions[session_id] = AcpSession(self.core, self._client, session_id, folder)
        return acp.NewSessionResponse(session_id=session_id)

    async def prompt(self, session_id: str, prompt: Sequence[Any], **kwargs: Any) -> acp.PromptResponse:
        session = self._session(session_id)
        text = "\n".join(block.text for block in prompt if isinstance(block, schema.TextContentBlock)).strip()
        if not text:
            raise invalid_params("prompt", "no text in the prompt")
        updates = SessionUpdates(session.client, session_id, session.session, f"p{next(self._ids)}")
        session.updates = updates
        run = asyncio.ensure_future(
            session.session.run(AgentRequest(prompt=text), updates, session.conversation)
        )
        session.running = run
        try:
            result = await run
        except asyncio.CancelledError:
            if not run.cancelled():
                raise  # this request itself was cancelled, not the run
            updates.close_cancelled_calls()  # sent before the answer (`finally`), as ACP wants
            return acp.PromptResponse(stop_reason="cancelled")
        finally:
            session.running = None
            session.updates = None
            await updates.close()
        return acp.PromptResponse(stop_reason=STOP_REASONS[result.stop_reason])

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.stop(session_id)  # again: the prompt may have started after the line was read

    def stop(self, session_id: str) -> None:
        """Stop the session's running prompt (at its next await): called as the `session/cancel`
        line is read (AcpMessages), and when the SDK dispatches it."""
        session = self._sessions.get(session_id)
        if session is not None and session.running is not None:
            session.running.cancel()

    def _session(self, session_id: str) -> AcpSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise invalid_params(
                "sessionId", f"no such session: {quoted(brief(session_id))} (start one with session/new)"
            )
        self._sessions.move_to_end(session_id)
        return session

    def _make_room(self) -> None:
        """Close the least recently used idle session if MAX_SESSIONS are open, so that a client
        cannot make the agent hold sessions without bound; refuse if none is idle."""
        if len(self._sessions) < MAX_SESSIONS:
            return
        idle = next((key for key, session in self._sessions.items() if session.running is None), None)
        if idle is None:
            raise TooManySessions(
                f"too many sessions: all {MAX_SESSIONS} are running a prompt; cancel one, or wait "
                "for one to end"
            )
        log.info("closing session %s, the least recently used, to make room for a new one", idle)
        del self._sessions[idle]


def serve_acp(core: Core, out: BinaryIO) -> int:
    """Serve ACP over `core` on stdin and `out` (the protocol's own copy of stdout) until stdin
    ends."""
    asyncio.run(_serve(AcpFace(core), out))
    return 0


async def _serve(face: AcpFace, out: BinaryIO) -> None:
    """The SDK's connection over bounded, strictly parsed lines (llama_agent.faces.wire.lines): it sees
    only well-formed messages, and writes only strict JSON."""
    warnings = asyncio.ensure_future(face.core.warn_of_failures())
    channel = await open_stdio(sys.stdin.buffer, out, AcpMessages(face, face.stop))
    await acp.run_agent(cast(acp.Agent, AnsweringErrors(face)), channel)
    warnings.cancel()
