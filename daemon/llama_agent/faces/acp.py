"""The ACP face: llama-agent as the agent inside Zed, JetBrains or Neovim's agent plugins.

A thin adapter over the composition root (Agent Client Protocol, version 1, one JSON-RPC
message per line on stdio, through the `agent-client-protocol` SDK over the bounded, strictly
parsed lines of llama_agent.faces.wire.lines): `session/new` grants its `cwd` to the workspace tools,
`session/prompt` runs the same agent loop and streams `session/update`s (the answer's text, each
tool call and its result), `session/cancel` ends the turn with `cancelled`, and a tool that can
write runs only after `session/request_permission`. At most MAX_SESSIONS sessions are held.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import stat
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import acp
from acp import schema

from llama_agent import __version__
from llama_agent.common.text import quoted, visible
from llama_agent.config import DaemonConfig
from llama_agent.core import Core, open_core
from llama_agent.faces.wire.jsonrpc import (
    INVALID_PARAMS,
    MODEL_UNAVAILABLE,
    PROMPT_TOO_LONG,
    TOO_MANY_SESSIONS,
    brief,
    encode_json,
)
from llama_agent.faces.wire.lines import open_stdio
from llama_agent.runtime.models.backend import ContextOverflow, ModelError, ModelLoader
from llama_agent.runtime.tools.grants_file import ApprovalKey
from llama_agent.runtime.tools.policy import DirGrant
from llama_agent.services.agent.loop import AgentRequest, AgentResult, AgentStep, InvalidRequest, StopReason
from llama_agent.services.agent.turns import AnswerStream
from llama_agent.services.tools.registry import Tool, UnknownTool

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
ALLOW_ONCE, ALLOW_ALWAYS, REJECT = "allow-once", "allow-always", "reject-once"
PERMISSION_OPTIONS = [
    schema.PermissionOption(option_id=ALLOW_ONCE, name="Allow once", kind="allow_once"),
    schema.PermissionOption(option_id=ALLOW_ALWAYS, name="Always allow this tool", kind="allow_always"),
    schema.PermissionOption(option_id=REJECT, name="Reject", kind="reject_once"),
]


def tool_kind(tool: Tool | None) -> schema.ToolKind:
    if tool is None or not tool.grants.dirs:
        return "other"
    return "edit" if tool.writes else "read"


# What "Always allow" binds, as the grants file binds an approval: the tool's name, its component
# (sha256), its policy's request (sha256); and the directories it may write, as the person saw them.
AllowKey = tuple[ApprovalKey, tuple[str, ...]]


def allow_key(tool: Tool) -> AllowKey:
    approval = ApprovalKey(tool.name, tool.loaded.content_hash, tool.request_sha256)
    return approval, tuple(f"{grant.host} at {grant.guest}" for grant in writable_dirs(tool))


def writable_dirs(tool: Tool) -> list[DirGrant]:
    return [grant for grant in tool.grants.dirs if grant.mode == "rw"]


def permission_request(tool: Tool, arguments: dict[str, Any], call_id: str) -> schema.ToolCallUpdate:
    """What the person is asked: which tool, from which file, may write where, with what. Every
    string in it made visible, so that an escape sequence in a directory's name (or in an
    argument) cannot redraw the question."""
    writable = writable_dirs(tool)
    hosts = ", ".join(quoted(str(grant.host)) for grant in writable)
    places = ", ".join(f"{quoted(str(grant.host))} (at {quoted(grant.guest)})" for grant in writable)
    detail = (
        f"The tool {quoted(tool.name)} ({quoted(str(tool.loaded.path))}) asks to run with "
        f"read-write access to {places}."
    )
    return schema.ToolCallUpdate(
        tool_call_id=call_id,
        title=f"{visible(tool.name)} may write to {hosts}",
        kind="edit",
        content=[acp.tool_content(acp.text_block(detail))],
        raw_input=visible_json(arguments),
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


def invalid_params(field: str, reason: str) -> acp.RequestError:
    """-32602 with the reason in the message, which is all that ACP clients show (the SDK's own
    helper says only "Invalid params" and puts the reason in `data`)."""
    return acp.RequestError(INVALID_PARAMS, f"{field}: {reason}", {field: reason})


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


@dataclass
class Session:
    cwd: Path
    always_allowed: set[AllowKey] = field(default_factory=set)
    running: asyncio.Task[Any] | None = None


class SessionUpdates:
    """`AgentEvents` for one prompt, as ACP session updates sent in order."""

    def __init__(self, client: acp.Client, session_id: str, core: Core, prompt_id: str) -> None:
        self._client = client
        self._session_id = session_id
        self._core = core
        self._prompt_id = prompt_id
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sender = asyncio.ensure_future(self._send_all())
        self._answer = AnswerStream()
        self.calls = 0  # tool calls announced so far

    def call_id(self, index: int) -> str:
        return f"{self._prompt_id}-call-{index}"

    def on_turn_start(self, index: int) -> None:
        self._answer = AnswerStream()

    def on_text(self, text: str) -> None:
        said = self._answer.feed(text)  # each piece read once: no re-reading of the whole turn
        if said:
            self._queue.put_nowait(acp.update_agent_message_text(said))

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        self.calls = index + 1
        loaded = self._core.toolbox.snapshot.tools.get(tool)
        update = acp.start_tool_call(
            self.call_id(index), tool, kind=tool_kind(loaded), status="in_progress", raw_input=arguments
        )
        self._queue.put_nowait(update)

    def on_tool_result(self, index: int, step: AgentStep) -> None:
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
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._ids = itertools.count(1)
        self._turns = asyncio.Lock()

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
        self._sessions[session_id] = Session(folder)
        return acp.NewSessionResponse(session_id=session_id)

    async def prompt(self, session_id: str, prompt: Sequence[Any], **kwargs: Any) -> acp.PromptResponse:
        session = self._session(session_id)
        text = "\n".join(block.text for block in prompt if isinstance(block, schema.TextContentBlock)).strip()
        if not text:
            raise invalid_params("prompt", "no text in the prompt")
        assert self._client is not None
        updates = SessionUpdates(self._client, session_id, self.core, f"p{next(self._ids)}")
        run = asyncio.ensure_future(self._run(session, session_id, text, updates))
        session.running = run
        try:
            result = await run
        except asyncio.CancelledError:
            if not run.cancelled():
                raise  # this request itself was cancelled, not the run
            return acp.PromptResponse(stop_reason="cancelled")
        except (UnknownTool, InvalidRequest) as error:
            raise invalid_params("prompt", str(error)) from error
        except ModelError as error:
            raise acp.RequestError(MODEL_UNAVAILABLE, f"the model is unavailable: {error}") from error
        except ContextOverflow as error:
            data = {"promptTokens": error.prompt_tokens, "contextSize": error.context_size}
            message = f"{error}: shorten the prompt, or start the agent with a larger --context-size"
            raise acp.RequestError(PROMPT_TOO_LONG, message, data) from error
        finally:
            session.running = None
            await updates.close()
        return acp.PromptResponse(stop_reason=STOP_REASONS[result.stop_reason])

    async def _run(
        self, session: Session, session_id: str, text: str, updates: SessionUpdates
    ) -> AgentResult:
        """Prompts take turns (the model serves one run at a time), each with its own session's
        folder granted as the workspace."""
        async with self._turns:
            if self.core.toolbox.workspace != session.cwd:
                await asyncio.to_thread(self.core.toolbox.set_workspace, session.cwd)
            approve = self._approval(session, session_id, updates)
            return await self.core.agent.run(AgentRequest(prompt=text), updates, approve)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.running is not None:
            session.running.cancel()

    def _session(self, session_id: str) -> Session:
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
            raise acp.RequestError(
                TOO_MANY_SESSIONS,
                f"too many sessions: all {MAX_SESSIONS} are running a prompt; cancel one, or wait "
                "for one to end",
            )
        log.info("closing session %s, the least recently used, to make room for a new one", idle)
        del self._sessions[idle]

    def _approval(self, session: Session, session_id: str, updates: SessionUpdates) -> Any:
        async def approve(tool: Tool, arguments: dict[str, Any]) -> bool:
            """Asked right after the call was announced: it has that call's id. "Always allow"
            holds for this tool as it is now: another component, request or directory asks again."""
            if not tool.writes or allow_key(tool) in session.always_allowed:
                return True
            assert self._client is not None
            call = permission_request(tool, arguments, updates.call_id(updates.calls - 1))
            answer = await self._client.request_permission(
                session_id=session_id, tool_call=call, options=PERMISSION_OPTIONS
            )
            chosen = answer.outcome.option_id if isinstance(answer.outcome, schema.AllowedOutcome) else None
            if chosen == ALLOW_ALWAYS:
                session.always_allowed.add(allow_key(tool))
            return chosen in (ALLOW_ONCE, ALLOW_ALWAYS)

        return approve


def serve_acp(config: DaemonConfig, out: BinaryIO, model_loader: ModelLoader | None = None) -> int:
    """Serve ACP on stdin and `out` (the protocol's own copy of stdout) until stdin ends."""
    with open_core(config, watch=True, model_loader=model_loader) as core:
        asyncio.run(_serve(AcpFace(core), out))
    return 0


async def _serve(face: AcpFace, out: BinaryIO) -> None:
    """The SDK's connection over bounded, strictly parsed lines (llama_agent.faces.wire.lines): it sees
    only well-formed messages, and writes only strict JSON."""
    channel = await open_stdio(sys.stdin.buffer, out)
    await acp.run_agent(cast(acp.Agent, face), channel)
