"""The daemon's JSON-RPC face: thin handlers that delegate to the services layer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from daemon import __version__
from daemon.config import DaemonConfig
from daemon.protocol.jsonrpc import AgentProtocol, dict_params_converter
from daemon.protocol.wire import call_result_to_wire, change_to_wire, failure_to_wire, tool_to_wire
from daemon.runtime.schema import ArgumentError
from daemon.services.toolbox import Toolbox, ToolSetChange, UnknownTool, new_host
from daemon.services.watcher import ToolWatcher

TOOLS_DID_CHANGE = "tools/didChange"

log = logging.getLogger(__name__)


class AgentServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "llama-agent",
            __version__,
            protocol_cls=AgentProtocol,
            converter_factory=dict_params_converter,
        )
        self._toolbox: Toolbox | None = None
        self._watcher: ToolWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def toolbox(self) -> Toolbox:
        if self._toolbox is None:
            raise RuntimeError("server not configured")
        return self._toolbox

    def configure(self, config: DaemonConfig) -> None:
        self.config = config
        self._toolbox = Toolbox(new_host(config), list(config.tools_dirs))
        # The watcher does the first load while the client is still starting up;
        # requests wait for it.
        self._watcher = ToolWatcher(self._toolbox, self._announce_threadsafe)
        self._watcher.start()

    def attach_loop(self) -> None:
        """Called on `initialize`: from now on tool changes are announced to the client."""
        self._loop = asyncio.get_running_loop()

    def _announce_threadsafe(self, change: ToolSetChange) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._announce, change)

    def _announce(self, change: ToolSetChange) -> None:
        self.protocol.notify(TOOLS_DID_CHANGE, change_to_wire(change))
        for failure in change.failed:
            self.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Error,
                    message=f"llama-agent: cannot load tool {failure.path}: {failure.error}",
                )
            )

    def serve(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """Run until `exit`; the exit code follows LSP: 0 only after `shutdown`."""
        try:
            self.start_io(stdin, stdout)
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            if self._toolbox is not None:
                self._toolbox.close()
        return 0 if self.protocol._shutdown else 1


server = AgentServer()


def _object_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams("params must be an object")
    return params


@server.feature(types.INITIALIZE)
def initialize(ls: AgentServer, params: types.InitializeParams) -> None:
    ls.attach_loop()


@server.feature("tools/list")
async def tools_list(ls: AgentServer, params: Any) -> dict[str, Any]:
    _object_params(params)
    snapshot = await ls.toolbox.ready()
    tools = sorted(snapshot.tools.values(), key=lambda tool: tool.name)
    return {
        "tools": [tool_to_wire(tool) for tool in tools],
        "failed": [failure_to_wire(failure) for failure in snapshot.failures],
    }


@server.feature("tools/invoke")
async def tools_invoke(ls: AgentServer, params: Any) -> dict[str, Any]:
    body = _object_params(params)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise JsonRpcInvalidParams("'name' must be a non-empty string")
    arguments = body.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise JsonRpcInvalidParams("'arguments' must be an object")
    try:
        result = await ls.toolbox.invoke(name, arguments)
    except UnknownTool as error:
        raise JsonRpcInvalidParams(str(error), data={"tool": name}) from error
    except ArgumentError as error:
        raise JsonRpcInvalidParams(
            f"invalid arguments for tool {name!r}: {error}", data={"tool": name, "field": error.field}
        ) from error
    return call_result_to_wire(result)
