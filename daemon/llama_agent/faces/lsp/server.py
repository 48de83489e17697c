"""The daemon's JSON-RPC face: thin handlers that delegate to a session on the core.

One client, one session: opened at `initialize` with the client's workspace folder (or
`--workspace`). `build_server()` makes a server with every handler: one for stdio (`server`), and
one per connection of the network face (faces/network), which decides where a session's workspace
may be (`workspace_for`) and holds it to its tenant's `quota`.

The session asks the person with `window/showMessageRequest`: about a call that
may write (after the call's `$/progress` report, in an agent run), and about what a tool's policy
asks beyond the defaults.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import FeatureRequestError
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from llama_agent import __version__
from llama_agent.common.errors import AgentError, InternalError, InvalidParams, NotInitialized
from llama_agent.common.text import quoted, visible
from llama_agent.core import Core
from llama_agent.faces.lsp.framing import open_reader, serve_frames
from llama_agent.faces.lsp.progress import RunProgress
from llama_agent.faces.lsp.protocol import AgentProtocol, agent_converter
from llama_agent.faces.wire.params import (
    GRANTS_DID_CHANGE,
    TOOLS_DID_CHANGE,
    grants_view_client,
    parse_agent_run,
    parse_grants_answer,
    parse_grants_list,
    parse_grants_revoke,
    parse_new_session,
    parse_session_id,
    parse_tools_invoke,
    parse_tools_list,
)
from llama_agent.faces.wire.results import (
    JsonObject,
    agent_result_to_wire,
    call_result_to_wire,
    change_to_wire,
    conversation_to_wire,
    failure_to_wire,
    grants_to_wire,
    model_to_wire,
    tool_to_wire,
)
from llama_agent.runtime.models.backend import ModelError
from llama_agent.services.consent.approvals import ACTIONS, PendingRequest, prompt_message
from llama_agent.services.consent.calls import CannotAsk, Choice, ConsentRequest
from llama_agent.services.models import ModelService
from llama_agent.services.sessions import Session
from llama_agent.services.tenants.quotas import TenantQuota
from llama_agent.services.tools.registry import Toolbox, ToolSetChange, UnknownTool

# On SIGTERM, how long the tool calls already running may take to finish.
STOP_GRACE_SECONDS = 5.0
# The answers to a question about a call that may write (the grants' questions offer ACTIONS).
CALL_ANSWERS = {
    "Allow once": Choice.ALLOW_ONCE,
    "Always allow in this session": Choice.ALLOW_ALWAYS,
    "Reject": Choice.REJECT,
}

log = logging.getLogger(__name__)


class AgentServer(LanguageServer):
    protocol: AgentProtocol

    def __init__(self) -> None:
        super().__init__(
            "llama-agent",
            __version__,
            protocol_cls=AgentProtocol,
            converter_factory=agent_converter,
        )
        self._core: Core | None = None
        self._session: Session | None = None  # the client's, from `initialize` on
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._client_ready = False  # after `initialized`: the client may be asked things
        # A client with a Grants view (initializationOptions.grantsView) shows pending grant
        # requests itself: it is not asked about them, and hears grants/didChange instead.
        self.grants_view = False
        self._grants_told: JsonObject | None = None  # the grants the client last saw or was told of
        self._unsubscribe: Callable[[], None] | None = None
        # The network face's: the workspace `initialize` asks for (InvalidParams if not allowed),
        # and the tenant's limits its session is held to.
        self.workspace_for: Callable[[types.InitializeParams], Path | None] | None = None
        self.quota: TenantQuota | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("server not configured")
        return self._core

    @property
    def session(self) -> Session:
        if self._session is None:
            raise NotInitialized()
        return self._session

    @property
    def toolbox(self) -> Toolbox:
        return self.core.toolbox

    @property
    def models(self) -> ModelService:
        return self.core.models

    def configure(self, core: Core) -> None:
        """Serve `core` (whose watcher does the first load while the client is still starting up;
        requests wait for it). Serving closes it."""
        self.config = core.config
        self._core = core
        self._unsubscribe = core.subscribe(self._announce_threadsafe)
        self.protocol.announced["model"] = model_to_wire(core.config.model.identity())

    async def preload_model(self) -> None:
        """Load the model in the background, as server-initiated progress if the client can show it."""
        window = self.client_capabilities.window
        token = None
        if window is not None and window.work_done_progress:
            token = "llama-agent/model-load"
            await self.work_done_progress.create_async(token)
            self.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title="Loading model", percentage=0, cancellable=False)
            )
            self.models.on_download = self._download_reporter(token)
        loading = self.models.start_loading()
        try:
            model = await asyncio.wrap_future(loading)
            identity = model.identity
            where = f" at {identity.base_url}" if identity.base_url else ""
            # A remote model's name, and its errors, are the server's words.
            message = visible(f"model {identity.path or identity.name} ({identity.backend}{where}) loaded")
            level = types.MessageType.Info
        except ModelError as error:
            message, level = f"model not loaded: {visible(str(error))}", types.MessageType.Error
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        self.window_log_message(types.LogMessageParams(type=level, message=f"llama-agent: {message}"))

    def _download_reporter(self, token: str) -> Callable[[int, int | None], None]:
        """Reports a model download to `token`, from the model thread, at each whole percent."""
        loop = asyncio.get_running_loop()
        last: list[int | None] = [None]

        def report(done: int, total: int | None) -> None:
            percentage = min(100, done * 100 // total) if total else None
            if percentage is not None and percentage == last[0]:
                return
            last[0] = percentage
            progress = types.WorkDoneProgressReport(
                message=f"downloading: {done / 2**20:.1f} MiB"
                + (f" of {total / 2**20:.1f}" if total else ""),
                percentage=percentage,
            )
            loop.call_soon_threadsafe(self.work_done_progress.report, token, progress)

        return report

    def attach_loop(self) -> None:
        """Called on `initialize`: from now on tool changes are announced to the client."""
        self._loop = asyncio.get_running_loop()

    def open_session(self, folder: Path | None) -> None:
        """The client's session, `folder` its workspace (granted, per call, to the tools whose
        policy asks for the workspace)."""
        self._session = self.core.open_session(workspace=folder, asker=self, quota=self.quota)

    def session_workspace(self, params: types.InitializeParams) -> Path | None:
        """The session's workspace: as `workspace_for` decides, else `--workspace` or the client's."""
        if self.workspace_for is not None:
            return self.workspace_for(params)
        return self.config.session.workspace or client_workspace(params)

    def disconnect(self) -> None:
        """A network connection's end: no more announcements, no background work, no threads."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._background):
            task.cancel()
        self.shutdown()  # type: ignore[no-untyped-call]

    async def ask(self, request: ConsentRequest) -> Choice:
        """The person's answer about a call that may write (window/showMessageRequest), asked
        once the client knows of the call: it asked for it (tools/invoke), or the call's
        `$/progress` report went out before (agent/run)."""
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=request.message(),  # its paths, names and text quoted and made visible
            actions=[types.MessageActionItem(title=title) for title in CALL_ANSWERS],
        )
        try:
            answer = await self.window_show_message_request_async(params)
        except Exception as error:  # an error answer, or a client that is gone
            raise CannotAsk(f"the editor could not ask: {visible(str(error))}") from error
        return CALL_ANSWERS.get(_action_title(answer) or "", Choice.REJECT)

    def client_ready(self) -> None:
        """Called on `initialized`: once the tools are loaded, ask about their pending requests."""
        self._client_ready = True
        self._in_background(self._ask_when_loaded())

    async def _ask_when_loaded(self) -> None:
        await self.toolbox.ready()
        self.ask_about_pending_grants()

    def ask_about_pending_grants(self) -> None:
        """Put each request for grants that waits for the person to them, once, without waiting
        for the answers (window/showMessageRequest), unless the client shows them in a view."""
        if not self._client_ready or self._session is None or self.grants_view:
            return
        for request in self._session.grant_requests_to_ask():
            self._in_background(self._ask_grants(self._session, request))

    async def _ask_grants(self, session: Session, request: PendingRequest) -> None:
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=prompt_message(request),  # its paths and names quoted and made visible
            actions=[types.MessageActionItem(title=action) for action in ACTIONS],
        )
        try:
            answer = await self.window_show_message_request_async(params)
        except Exception as error:  # an error answer, or a client that is gone: nothing to do
            session.grant_request_unanswerable(request, error)
            return
        change = await session.answer_grant_request(request, _action_title(answer))
        if change:
            self._announce(change)
        self.tell_if_grants_changed()

    def grants_listing(self) -> JsonObject:
        """grants/list's result, now; what the client will have seen (see tell_if_grants_changed)."""
        self._grants_told = grants_to_wire(self.session.grants())
        return self._grants_told

    def announce_grants(self, change: ToolSetChange) -> None:
        """After an answer or a revocation in a Grants view: the tools it changed, and the grants."""
        if change:
            self._announce(change)  # tells of the grants too
        else:
            self.tell_if_grants_changed()

    def tell_if_grants_changed(self) -> None:
        """grants/didChange to a client with a Grants view, if the session's pending or approved
        grants differ from what it last listed or was told of (other clients have no use for it)."""
        if self._session is None or not self._client_ready or not self.grants_view:
            return
        current = grants_to_wire(self._session.grants())
        if current != self._grants_told:
            self._grants_told = current
            self.protocol.notify(GRANTS_DID_CHANGE, None)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def report_server_error(self, error: Exception, source: type[Exception]) -> None:
        """Log a failure outside a request, which pygls would also show the user (window/showMessage).

        Whatever caused it (a notification the daemon could not handle, an answer it could not
        send) is no message for the user, and its text may name the daemon's own files.
        """
        if source is FeatureRequestError:
            return  # answered to the client, and logged with its traceback, by pygls
        data = getattr(error, "data", None)
        trace = "".join(data["traceback"]) if isinstance(data, dict) and "traceback" in data else ""
        log.error("%s: %s%s", source.__name__, error, f"\n{trace.rstrip()}" if trace else "")

    def require_initialized(self) -> None:
        if self._loop is None:
            raise NotInitialized()

    def _announce_threadsafe(self, change: ToolSetChange) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._announce, change)

    def _announce(self, change: ToolSetChange) -> None:
        self.protocol.notify(TOOLS_DID_CHANGE, change_to_wire(change))
        for failure in change.failed:
            # The error may quote the file: both are the tool author's words.
            problem = f"{quoted(str(failure.path))}: {visible(failure.error)}"
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Error, message=f"llama-agent: cannot load tool {problem}"
                )
            )
        self.ask_about_pending_grants()
        self.tell_if_grants_changed()

    def serve(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """Run until `exit`, end of input or SIGTERM.

        The exit code follows LSP, 0 only after `shutdown`, except that SIGTERM is an orderly
        stop (0): nothing more is read, and the tool calls already running may finish and be
        answered, for up to STOP_GRACE_SECONDS.
        """
        self.protocol.set_writer(StdoutWriter(stdout))
        fallback = StdinAsyncReader(stdin, self.thread_pool)
        terminated = False

        async def serve() -> None:
            nonlocal terminated
            reader = await open_reader(stdin, fallback)
            frames = asyncio.create_task(serve_frames(reader, self.protocol))
            sigterm = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, sigterm.set)
            stopping = asyncio.create_task(sigterm.wait())
            await asyncio.wait({frames, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if sigterm.is_set():
                terminated = True
                log.info("stopping on SIGTERM: letting the running tool calls finish")
                frames.cancel()
                if self._core is not None:
                    await asyncio.to_thread(self._core.toolbox.close, STOP_GRACE_SECONDS)
                # The finished calls' handlers resume, and pygls sends their answers, a few
                # event-loop turns later.
                await asyncio.sleep(0.05)

        try:
            asyncio.run(serve())
        except BrokenPipeError:
            log.error("the client closed the connection")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()  # type: ignore[no-untyped-call]
            if self._core is not None:
                self._core.close()
        return 0 if self.protocol.shut_down or terminated else 1


# Every handler, by method: `build_server` registers them on each server it makes.
FEATURES: list[tuple[str, Callable[..., Any]]] = []


def feature(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        FEATURES.append((method, handler))
        return handler

    return register


def build_server() -> AgentServer:
    """A server with every handler of this module, for one client."""
    built = AgentServer()
    for method, handler in FEATURES:
        built.feature(method)(handler)
    return built


def _action_title(answer: Any) -> str | None:
    """The title of the action the person chose; None if they dismissed the question."""
    title = answer.get("title") if isinstance(answer, dict) else getattr(answer, "title", None)
    return title if isinstance(title, str) else None


@feature(types.INITIALIZE)
def initialize(ls: AgentServer, params: types.InitializeParams) -> None:
    ls.grants_view = grants_view_client(params.initialization_options)
    ls.attach_loop()
    ls.open_session(ls.session_workspace(params))


def client_workspace(params: types.InitializeParams) -> Path | None:
    """The client's (first) workspace folder, as a local path."""
    uris = [folder.uri for folder in params.workspace_folders or []] + [params.root_uri or ""]
    for uri in uris:
        path = to_fs_path(uri) if uri else None
        if path:
            return Path(path)
    return Path(params.root_path) if params.root_path else None


@feature(types.INITIALIZED)
async def initialized(ls: AgentServer, params: types.InitializedParams) -> None:
    ls.client_ready()
    if ls.config.session.eager_model_load:
        await ls.preload_model()


@feature("tools/list")
async def tools_list(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    parse_tools_list(params)
    tools = await ls.session.ready()
    return {
        "tools": [tool_to_wire(tools[name]) for name in sorted(tools)],
        "failed": [failure_to_wire(failure) for failure in ls.toolbox.snapshot.failures],
    }


@feature("tools/invoke")
async def tools_invoke(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    name, arguments = parse_tools_invoke(params)
    result = await ls.session.invoke(name, arguments)
    return call_result_to_wire(result)


@feature("agent/newSession")
async def agent_new_session(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    parse_new_session(params)
    return {"sessionId": ls.session.conversations.new().id}


@feature("agent/forget")
async def agent_forget(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    return {"forgotten": ls.session.conversations.forget(parse_session_id("agent/forget", params))}


@feature("agent/history")
async def agent_history(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    conversation = ls.session.conversations.get(parse_session_id("agent/history", params))
    return conversation_to_wire(conversation)


@feature("agent/run")
async def agent_run(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    run = parse_agent_run(params)
    request = run.request
    conversations = ls.session.conversations
    conversation = conversations.new() if run.new_session else None
    if run.session_id is not None:
        conversation = conversations.get(run.session_id)
    await ls.toolbox.ready()
    progress = RunProgress(ls.protocol, run.token)
    progress.begin(request.prompt)
    outcome = "cancelled"
    try:
        result = await ls.session.run(request, progress, conversation)
        outcome = f"done ({result.stop_reason})"
    except UnknownTool as error:  # a name in `tools`
        outcome = error.message
        raise InvalidParams(error.message, "tools", error.data) from error
    except AgentError as error:  # answered as every face answers it (protocol.lsp_error)
        outcome = error.message
        raise
    except Exception as error:  # a bug: pygls answers it, and logs its traceback
        outcome = InternalError(type(error).__name__).message
        raise
    finally:
        progress.end(outcome)
    return {**agent_result_to_wire(result), "sessionId": conversation.id if conversation else None}


@feature("grants/list")
async def grants_list(ls: AgentServer, params: Any) -> JsonObject:
    ls.require_initialized()
    parse_grants_list(params)
    await ls.session.ready()
    return ls.grants_listing()


@feature("grants/answer")
async def grants_answer(ls: AgentServer, params: Any) -> JsonObject:
    ls.require_initialized()
    answer = parse_grants_answer(params)
    await ls.session.ready()
    approved, change = await ls.session.answer_grant(answer.request_id, answer.action)
    ls.announce_grants(change)
    return {"changed": approved}


@feature("grants/revoke")
async def grants_revoke(ls: AgentServer, params: Any) -> JsonObject:
    ls.require_initialized()
    name = parse_grants_revoke(params)
    await ls.session.ready()
    revoked, change = await ls.session.revoke_grants(name)
    ls.announce_grants(change)
    return {"revoked": revoked}


# The stdio face's: one client per process.
server = build_server()
