"""The daemon's JSON-RPC face: thin handlers that delegate to the services layer."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import (
    FeatureRequestError,
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcServerNotInitialized,
)
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from llama_agent import __version__
from llama_agent.common.text import quoted, visible
from llama_agent.config import DaemonConfig
from llama_agent.core import Core, open_core
from llama_agent.faces.lsp.framing import open_reader, serve_frames
from llama_agent.faces.lsp.progress import RunProgress
from llama_agent.faces.lsp.protocol import AgentProtocol, agent_converter
from llama_agent.faces.wire.jsonrpc import MODEL_UNAVAILABLE, PROMPT_TOO_LONG
from llama_agent.faces.wire.params import (
    TOOLS_DID_CHANGE,
    parse_agent_run,
    parse_tools_invoke,
    parse_tools_list,
)
from llama_agent.faces.wire.results import (
    agent_result_to_wire,
    call_result_to_wire,
    change_to_wire,
    failure_to_wire,
    model_to_wire,
    tool_to_wire,
)
from llama_agent.runtime.models.backend import ContextOverflow, ModelError, ModelLoader
from llama_agent.runtime.tools.schema import ArgumentError
from llama_agent.services.agent.loop import Agent, InvalidRequest
from llama_agent.services.consent.approvals import ACTIONS, PendingRequest, Prompts, prompt_message
from llama_agent.services.models import ModelService
from llama_agent.services.tools.registry import (
    ReconcileResult,
    Toolbox,
    ToolSet,
    ToolSetChange,
    UnknownTool,
)

# On SIGTERM, how long the tool calls already running may take to finish.
STOP_GRACE_SECONDS = 5.0

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._prompts: Prompts | None = None
        self._client_ready = False  # after `initialized`: the client may be asked things
        self._workspace_job: asyncio.Future[ReconcileResult] | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("server not configured")
        return self._core

    @property
    def toolbox(self) -> Toolbox:
        return self.core.toolbox

    @property
    def models(self) -> ModelService:
        return self.core.models

    @property
    def agent(self) -> Agent:
        return self.core.agent

    def configure(self, config: DaemonConfig, model_loader: ModelLoader | None = None) -> None:
        """Build the services; `model_loader` replaces the llama.cpp backend (tests script one).
        The watcher does the first load while the client is still starting up; requests wait
        for it."""
        self.config = config
        self._core = open_core(config, watch=True, model_loader=model_loader)
        self._core.subscribe(self._announce_threadsafe)
        self._prompts = Prompts(self._core.approvals)
        self.protocol.announced["model"] = model_to_wire(config.model_settings().identity())

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

    def use_workspace(self, folder: Path) -> None:
        """Grant `folder` to the tools whose policy asks for the workspace. Given at `initialize`,
        it is part of the first load: requests wait for it, and its change is not announced."""
        log.info("workspace folder: %s", folder)
        loop = asyncio.get_running_loop()
        self._workspace_job = loop.run_in_executor(None, self.toolbox.set_workspace, folder)

    async def tools_ready(self) -> ToolSet:
        """The tools once the first load, and the workspace given at `initialize`, are applied."""
        if self._workspace_job is not None:
            try:
                await asyncio.shield(self._workspace_job)
            except Exception as error:  # the tools still load; only the workspace grant is missing
                log.error("cannot apply the workspace folder: %s", error)
                self._workspace_job = None
        return await self.toolbox.ready()

    def client_ready(self) -> None:
        """Called on `initialized`: once the tools are loaded, ask about their pending requests."""
        self._client_ready = True
        self._in_background(self._ask_when_loaded())

    async def _ask_when_loaded(self) -> None:
        await self.toolbox.ready()
        self.ask_about_pending_grants()

    def ask_about_pending_grants(self) -> None:
        """Put each request for grants that waits for the person to them, once, without waiting
        for the answers (window/showMessageRequest)."""
        if not self._client_ready or self._prompts is None:
            return
        for request in self._prompts.to_ask(self.toolbox.snapshot.pending):
            self._in_background(self._ask(self._prompts, request))

    async def _ask(self, prompts: Prompts, request: PendingRequest) -> None:
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=prompt_message(request),  # its paths and names quoted and made visible
            actions=[types.MessageActionItem(title=action) for action in ACTIONS],
        )
        try:
            answer = await self.window_show_message_request_async(params)
        except Exception as error:  # an error answer, or a client that is gone: nothing to do
            prompts.failed(request, error)
            return
        # The grants file is written (and fsynced) off the event loop.
        if await asyncio.to_thread(prompts.answered, request, _action_title(answer)):
            result = await asyncio.to_thread(self.toolbox.reconcile, [request.path])
            if result.change:
                self._announce(result.change)

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
            raise JsonRpcServerNotInitialized("the server is not initialized: send `initialize` first")

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


server = AgentServer()


def _action_title(answer: Any) -> str | None:
    """The title of the action the person chose; None if they dismissed the question."""
    title = answer.get("title") if isinstance(answer, dict) else getattr(answer, "title", None)
    return title if isinstance(title, str) else None


@server.feature(types.INITIALIZE)
def initialize(ls: AgentServer, params: types.InitializeParams) -> None:
    ls.attach_loop()
    folder = ls.config.workspace or client_workspace(params)
    if folder is not None:
        ls.use_workspace(folder)


def client_workspace(params: types.InitializeParams) -> Path | None:
    """The client's (first) workspace folder, as a local path."""
    uris = [folder.uri for folder in params.workspace_folders or []] + [params.root_uri or ""]
    for uri in uris:
        path = to_fs_path(uri) if uri else None
        if path:
            return Path(path)
    return Path(params.root_path) if params.root_path else None


@server.feature(types.INITIALIZED)
async def initialized(ls: AgentServer, params: types.InitializedParams) -> None:
    ls.client_ready()
    if ls.config.eager_model_load:
        await ls.preload_model()


@server.feature("tools/list")
async def tools_list(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    parse_tools_list(params)
    snapshot = await ls.tools_ready()
    tools = sorted(snapshot.tools.values(), key=lambda tool: tool.name)
    return {
        "tools": [tool_to_wire(tool) for tool in tools],
        "failed": [failure_to_wire(failure) for failure in snapshot.failures],
    }


@server.feature("tools/invoke")
async def tools_invoke(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    name, arguments = parse_tools_invoke(params)
    await ls.tools_ready()
    try:
        result = await ls.toolbox.invoke(name, arguments)
    except UnknownTool as error:
        raise JsonRpcInvalidParams(str(error), data={"tool": name}) from error
    except ArgumentError as error:
        raise JsonRpcInvalidParams(
            f"invalid arguments for tool {name!r}: {error}", data={"tool": name, "field": error.field}
        ) from error
    return call_result_to_wire(result)


@server.feature("agent/run")
async def agent_run(ls: AgentServer, params: Any) -> dict[str, Any]:
    ls.require_initialized()
    request, token = parse_agent_run(params)
    await ls.tools_ready()
    progress = RunProgress(ls.protocol, token)
    progress.begin(request.prompt)
    outcome = "cancelled"
    try:
        result = await ls.agent.run(request, progress)
        outcome = f"done ({result.stop_reason})"
    except UnknownTool as error:
        outcome = str(error)
        raise JsonRpcInvalidParams(f"agent/run: {error}", data={"field": "tools"}) from error
    except InvalidRequest as error:
        outcome = str(error)
        raise JsonRpcInvalidParams(f"agent/run: {error}", data={"field": error.field}) from error
    except ModelError as error:
        outcome = f"the model is unavailable: {error}"
        raise JsonRpcException(outcome, code=MODEL_UNAVAILABLE) from error
    except ContextOverflow as error:
        outcome = (
            f"{error}: offer fewer tools (`tools`), shorten the prompt, or start the daemon "
            "with a larger --context-size"
        )
        data = {"promptTokens": error.prompt_tokens, "contextSize": error.context_size}
        raise JsonRpcException(outcome, code=PROMPT_TOO_LONG, data=data) from error
    finally:
        progress.end(outcome)
    return agent_result_to_wire(result)
