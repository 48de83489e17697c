"""A session: one client's state over the shared core.

The core (core.py) holds what every client shares: the tools and their watcher, the grants file,
the model, the agent. A session holds what is one client's: its workspace (the folder granted to
the tools whose policy says `workspace = "ro"|"rw"`, per call), the answers the person gave in it
("always allow this tool in this session"), the face's way of asking the person (an `Asker`), and
the questions about tools' requested grants it has put. Calls and agent runs go through it:
`await session.invoke(name, arguments)`, `await session.run(request, events)`. A session also holds
its client's conversations (services/agent/history.py): a run in one sees the turns before it,
and is recorded in it, cancelled or not.

A call that may write is asked about the same way on every face (services/consent/calls.py): the
face's `Asker` puts the question once the client knows of the call, and a call that is rejected,
or that nobody can be asked about, is a result with `isError` saying so; it is never run.

A session of a shared deployment is held to its tenant's quota (services/tenants/quotas.py): each
call counts, the client's own and each one a run makes; a run needs the tenant under its tokens
and one of its concurrent runs, and counts its tokens turn by turn. Over a quota raises
QuotaExceeded, also in the middle of a run: the run ends with that error (the client learns when
to retry), recorded in its conversation as failed. The face, not the session, holds one of the
tenant's `max_sessions` for as long as its client is connected (`quota.open_session()`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from llama_agent.common.errors import InvalidParams
from llama_agent.common.text import quoted, visible
from llama_agent.runtime.telemetry import audit
from llama_agent.runtime.telemetry.calls import refused_call
from llama_agent.runtime.tools.grants_file import GrantsFileError
from llama_agent.runtime.wasm.host import Invocation
from llama_agent.services.agent.history import AgentStep, Conversation, Conversations, Outcome, PastTurn
from llama_agent.services.agent.loop import Agent, AgentEvents, AgentRequest, AgentResult
from llama_agent.services.consent.approvals import (
    ALLOW_ONCE,
    ALWAYS_ALLOW,
    Approvals,
    ApprovedGrants,
    GrantsState,
    PendingRequest,
    Prompts,
    request_id,
    tool_words,
)
from llama_agent.services.consent.calls import (
    CallConsent,
    CannotAsk,
    Choice,
    ConsentRequest,
    declined,
    describe_call,
    not_asked,
)
from llama_agent.services.tenants.quotas import TenantQuota
from llama_agent.services.tools.registry import CallResult, Tool, Toolbox, ToolSetChange
from llama_agent.services.tools.workspace import (
    Workspace,
    WorkspaceMode,
    WorkspaceRefused,
    workspace_grant,
)

log = logging.getLogger(__name__)


class Asker(Protocol):
    """A face's way of asking the person about a call that may write."""

    async def ask(self, request: ConsentRequest) -> Choice:
        """The person's answer (REJECT when they dismiss the question). Raises CannotAsk when
        nobody can be asked here, saying how to approve instead."""
        ...


class NobodyToAsk:
    """An `Asker` where nobody can answer: every call that may write is refused with `reason`
    (why, and how to approve instead)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def ask(self, request: ConsentRequest) -> Choice:
        raise CannotAsk(self.reason)


class Session:
    """One client's: `workspace` (pinned now) granted per call to the tools whose approved policy
    asks for it, `asker` to put questions to its person, its consent answers (`allow_writes`:
    every call that may write approved up front) and the grant questions it has put; `quota`
    (None: no limits) is its tenant's."""

    def __init__(
        self,
        toolbox: Toolbox,
        agent: Agent,
        approvals: Approvals,
        asker: Asker,
        workspace: Path | None = None,
        allow_writes: bool = False,
        quota: TenantQuota | None = None,
    ) -> None:
        self.toolbox = toolbox
        self.agent = agent
        self.asker = asker
        self.quota = quota
        self.workspace = Workspace.at(workspace) if workspace is not None else None
        self.consent = CallConsent(allow_writes)
        self.conversations = Conversations()
        self._grant_prompts = Prompts(approvals)
        if self.workspace is not None:
            log.info("session workspace: %s", self.workspace.folder)

    # -- the tools as this session sees them ---------------------------------------------

    def tools(self) -> dict[str, Tool]:
        """The loaded tools, each with the grants its calls get here (this session's workspace
        among them); a tool whose workspace cannot be granted shows why as its `policy_error`."""
        return {name: self.tool_view(tool) for name, tool in self.toolbox.snapshot.tools.items()}

    async def ready(self) -> dict[str, Tool]:
        """`tools()` once the first load is done."""
        await self.toolbox.ready()
        return self.tools()

    def tool_view(self, tool: Tool) -> Tool:
        try:
            grants = self.toolbox.grants_in(tool, self.workspace)
        except WorkspaceRefused as error:
            return replace(tool, policy_error=str(error))
        pending = self._pending_view(tool.pending) if tool.pending is not None else None
        if grants is tool.grants and pending is tool.pending:
            return tool
        return replace(tool, grants=grants, pending=pending)

    def _pending_view(self, request: PendingRequest) -> PendingRequest:
        """A request as the person reads it here: the workspace it asks for, named."""
        if request.workspace not in ("ro", "rw") or self.workspace is None:
            return request
        mode: WorkspaceMode = "rw" if request.workspace == "rw" else "ro"
        try:
            grant = workspace_grant(self.workspace, mode, self.toolbox.protected, request.name)
        except WorkspaceRefused:
            return request
        return replace(request, grants=replace(request.grants, dirs=(grant, *request.grants.dirs)))

    # -- calls and runs ---------------------------------------------------------------------

    async def invoke(self, name: str, arguments: object) -> CallResult:
        """A call the client asked for. Raises UnknownTool, ArgumentError, QuotaExceeded; a call
        refused here (its workspace cannot be granted, the person rejected it) is a result with
        `is_error`."""
        return await self._call(name, arguments, step=None)

    async def run(
        self, request: AgentRequest, events: AgentEvents, conversation: Conversation | None = None
    ) -> AgentResult:
        """An agent run whose calls are made here; `events` (the face's progress sink) hears of
        each call before the person is asked about it. Raises as `Agent.run` does. In a
        `conversation`, runs take turns; each sees the turns before it and is recorded, whether it
        answers, is cut short, cancelled or fails. Raises QuotaExceeded before it starts (the
        tenant is at its tokens or its concurrent runs) or at a call over its calls."""
        if self.quota is None:
            return await self._run(request, events, conversation)
        self.quota.check_tokens()
        async with self.quota.run_slot():
            return await self._run(request, events, conversation)

    async def _run(
        self, request: AgentRequest, events: AgentEvents, conversation: Conversation | None
    ) -> AgentResult:
        calls = _RunCalls(self, events)
        on_tokens = self.quota.add_tokens if self.quota is not None else None
        if conversation is None:
            return await self.agent.run(request, calls, calls, on_tokens=on_tokens)
        async with conversation.lock:
            request = replace(request, prompt=conversation.unanswered(request.prompt))
            try:
                result = await self.agent.run(request, calls, calls, conversation, on_tokens)
            except BaseException as error:
                outcome: Outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
                conversation.record(PastTurn(request.prompt, tuple(calls.steps), "", outcome))
                raise
            outcome = "answered" if result.stop_reason in ("answer", "maxSteps") else "stopped"
            conversation.record(PastTurn(request.prompt, tuple(result.steps), result.answer, outcome))
            return result

    async def _call(self, name: str, arguments: object, step: int | None) -> CallResult:
        if self.quota is not None:
            self.quota.count_call()  # every call asked for counts, even one refused below
        await self.toolbox.ready()
        tool, coerced = self.toolbox.prepare_call(name, arguments)
        in_run = step is not None
        try:
            grants = self.toolbox.grants_in(tool, self.workspace)
        except WorkspaceRefused as error:
            refused_call(tool.name, "grant")
            return _refused(tool, f"not run: {error}")
        if self.consent.needed(tool, grants):
            # The call as it was made (validated: an object), as the client was told of it.
            assert isinstance(arguments, dict)
            question = await asyncio.to_thread(describe_call, tool, grants, arguments, step)
            try:
                choice = await self.asker.ask(question)
            except CannotAsk as error:
                log.info("%s not run: nobody can be asked (%s)", tool.name, error)
                refused_call(tool.name, "consent")
                return _refused(tool, not_asked(question, str(error), in_run))
            log.info("%s: the person answered %s", tool.name, choice.value)
            audit.record("consent", tool=tool.name, choice=choice.value, step=step)
            if not self.consent.answered(tool, grants, choice):
                refused_call(tool.name, "consent")
                return _refused(tool, declined(in_run))
        return await self.toolbox.call(replace(tool, grants=grants), coerced, grants)

    # -- the tools' requested grants (what a policy asks beyond the defaults) ----------------

    def grant_requests_to_ask(self) -> list[PendingRequest]:
        """The requests waiting for the person that were not put to them yet in this session (nor
        answered, nor approved meanwhile): each counts as asked from now."""
        return [self._pending_view(r) for r in self._grant_prompts.to_ask(self.toolbox.snapshot.pending)]

    async def answer_grant_request(self, request: PendingRequest, action: str | None) -> ToolSetChange:
        """Apply the person's answer (an action of approvals.ACTIONS; None: dismissed); the change
        it makes to the tools (approved: the tool gets its grants now)."""
        # The grants file is written (and fsynced) off the event loop, and the tool reloaded.
        applied = await asyncio.to_thread(self._grant_prompts.answered, request, action)
        dirs = [f"{grant.host} ({grant.mode})" for grant in request.grants.dirs]
        choice = action or "dismissed"
        audit.record("grant", tool=request.name, choice=choice, file=str(request.path), dirs=dirs)
        if not applied:
            return ToolSetChange()
        result = await asyncio.to_thread(self.toolbox.reconcile, [request.path])
        return result.change

    def grant_request_unanswerable(self, request: PendingRequest, error: BaseException) -> None:
        """The question could not be put (an error answer, a client gone): not asked again."""
        self._grant_prompts.failed(request, error)

    def grants(self) -> GrantsState:
        """The requests waiting for the person and the approved ones, as this session sees them
        (its workspace among the directories), each sorted by tool name."""
        approvals = self._grant_prompts.approvals
        pending = sorted(map(self._pending_view, self.toolbox.snapshot.pending), key=lambda r: r.name)
        defaults = self.toolbox.host.limits
        approved = [
            ApprovedGrants(tool.name, tool.granted_by, tool.grants, defaults, tool.workspace)
            for tool in sorted(self.tools().values(), key=lambda tool: tool.name)
            if tool.granted_by is not None
        ]
        denied = frozenset(request_id(r) for r in pending if approvals.is_denied(r.key))
        return GrantsState(tuple(pending), tuple(approved), denied)

    async def answer_grant(self, wanted: str, action: str) -> tuple[bool, ToolSetChange]:
        """Answer the pending request whose `request_id` is `wanted` with `action` (of ACTIONS):
        whether it is approved now, and the change to the tools. Raises InvalidParams if no
        request waits under that id."""
        for request in self.grants().pending:
            if request_id(request) == wanted:
                change = await self.answer_grant_request(request, action)
                return action in (ALLOW_ONCE, ALWAYS_ALLOW), change
        raise InvalidParams(
            f"no pending grant request with id {quoted(wanted)}: grants/list shows those waiting", "id"
        )

    async def revoke_grants(self, name: str) -> tuple[bool, ToolSetChange]:
        """Drop the approvals of the tool `name` (this process's and the grants file's), as
        `llama-agent tools revoke` does: whether there were any, and the change to the tools (back
        to their defaults). A trusted directory's approval cannot be revoked. Raises InvalidParams
        if the grants file cannot be written."""
        try:
            removed = await asyncio.to_thread(self._grant_prompts.approvals.revoke_everywhere, name)
        except (GrantsFileError, OSError) as error:
            raise InvalidParams(f"cannot revoke {tool_words(name)}: {visible(str(error))}", "tool") from error
        audit.record("grant", tool=name, choice="revoked", removed=removed)
        if not removed:
            return False, ToolSetChange()
        log.info("%s's approvals revoked (%d)", name, removed)
        result = await asyncio.to_thread(self.toolbox.reconcile)
        return True, result.change


def _refused(tool: Tool, text: str) -> CallResult:
    return CallResult(tool, Invocation.failure(text))


class _RunCalls:
    """One run's calls, made by its session: the face's events pass through, and the call being
    made is known by the step the events announced (the question names it)."""

    def __init__(self, session: Session, events: AgentEvents) -> None:
        self._session = session
        self._events = events
        self._step = 0
        self.steps: list[AgentStep] = []  # made so far: what a cancelled run did

    def on_turn_start(self, index: int) -> None:
        self._events.on_turn_start(index)

    def on_text(self, text: str) -> None:
        self._events.on_text(text)

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        self._step = index
        self._events.on_tool_call(index, tool, arguments)

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        self.steps.append(step)
        self._events.on_tool_result(index, step)

    async def invoke(self, name: str, arguments: dict[str, Any]) -> CallResult:
        return await self._session._call(name, arguments, step=self._step)
