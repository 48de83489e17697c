"""The ACP face: llama-agent as the agent inside Zed, JetBrains or Neovim's agent plugins.

A thin adapter over the composition root (Agent Client Protocol, version 1, one JSON-RPC
message per line on stdio, through the `agent-client-protocol` SDK): `session/new` grants its
`cwd` to the workspace tools, `session/prompt` runs the same agent loop and streams
`session/update`s (the answer's text, each tool call and its result), `session/cancel` ends the
turn with `cancelled`, and a tool that can write runs only after `session/request_permission`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import acp
from acp import schema

from daemon import __version__
from daemon.config import DaemonConfig
from daemon.core import Core, build_core
from daemon.runtime.backend import ContextOverflow, ModelError, ModelLoader
from daemon.services.agent import AgentRequest, AgentResult, AgentStep, InvalidRequest, StopReason
from daemon.services.toolbox import Tool, UnknownTool
from daemon.services.turns import partial_answer

log = logging.getLogger(__name__)

STOP_REASONS: dict[StopReason, schema.StopReason] = {
    "answer": "end_turn",
    "maxSteps": "max_turn_requests",
    "maxTokens": "max_tokens",
    "repetition": "max_tokens",
    "invalidTurn": "end_turn",
}
# One message (a line) may be this long: prompts with pasted files.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
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


@dataclass
class Session:
    cwd: Path
    always_allowed: set[str] = field(default_factory=set)
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
        self._turn = ""
        self._said = 0
        self.calls = 0  # tool calls announced so far

    def call_id(self, index: int) -> str:
        return f"{self._prompt_id}-call-{index}"

    def on_turn_start(self, index: int) -> None:
        self._turn, self._said = "", 0

    def on_text(self, text: str) -> None:
        self._turn += text
        answer = partial_answer(self._turn)
        if answer is not None and len(answer) > self._said:
            self._queue.put_nowait(acp.update_agent_message_text(answer[self._said :]))
            self._said = len(answer)

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
        self._sessions: dict[str, Session] = {}
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
        folder = Path(cwd)
        if not folder.is_absolute() or not folder.is_dir():
            raise acp.RequestError.invalid_params({"cwd": f"not an absolute path to a directory: {cwd}"})
        session_id = f"session-{next(self._ids)}"
        self._sessions[session_id] = Session(folder)
        return acp.NewSessionResponse(session_id=session_id)

    async def prompt(self, session_id: str, prompt: Sequence[Any], **kwargs: Any) -> acp.PromptResponse:
        session = self._session(session_id)
        text = "\n".join(block.text for block in prompt if isinstance(block, schema.TextContentBlock)).strip()
        if not text:
            raise acp.RequestError.invalid_params({"prompt": "no text in the prompt"})
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
        except (ModelError, ContextOverflow, UnknownTool, InvalidRequest) as error:
            raise acp.RequestError.internal_error({"message": str(error)}) from error
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
            approve = self._approval(session_id, updates)
            return await self.core.agent.run(AgentRequest(prompt=text), updates, approve)

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.running is not None:
            session.running.cancel()

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise acp.RequestError.invalid_params({"sessionId": f"no such session: {session_id}"})
        return session

    def _approval(self, session_id: str, updates: SessionUpdates) -> Any:
        session = self._sessions[session_id]

        async def approve(tool: Tool, arguments: dict[str, Any]) -> bool:
            """Asked right after the call was announced: it has that call's id."""
            if not tool.writes or tool.name in session.always_allowed:
                return True
            assert self._client is not None
            call = schema.ToolCallUpdate(
                tool_call_id=updates.call_id(updates.calls - 1),
                title=tool.name,
                kind="edit",
                raw_input=arguments,
            )
            answer = await self._client.request_permission(
                session_id=session_id, tool_call=call, options=PERMISSION_OPTIONS
            )
            chosen = answer.outcome.option_id if isinstance(answer.outcome, schema.AllowedOutcome) else None
            if chosen == ALLOW_ALWAYS:
                session.always_allowed.add(tool.name)
            return chosen in (ALLOW_ONCE, ALLOW_ALWAYS)

        return approve


def serve_acp(config: DaemonConfig, out: BinaryIO, model_loader: ModelLoader | None = None) -> int:
    """Serve ACP on stdin and `out` (the protocol's own copy of stdout) until stdin ends."""
    core = build_core(config, on_change=lambda change: None, model_loader=model_loader)
    try:
        asyncio.run(_serve(AcpFace(core), out))
    finally:
        core.close()
    return 0


async def _serve(face: AcpFace, out: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    await acp.run_agent(cast(acp.Agent, face), writer, reader)
