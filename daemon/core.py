"""The composition root: the services every face of the daemon shares, built in one place.

The LSP server, `llama-agent run` and `llama-agent tools` (and the benchmarks) each build a
`Core` from a `DaemonConfig` and talk to its services; none of them wires services itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.config import DaemonConfig
from daemon.runtime.backend import ModelLoader
from daemon.services.agent import Agent
from daemon.services.approvals import Approvals, approvals_for
from daemon.services.model_service import ModelService
from daemon.services.toolbox import Toolbox, ToolSetChange, new_host
from daemon.services.watcher import ToolWatcher


@dataclass
class Core:
    config: DaemonConfig
    approvals: Approvals
    toolbox: Toolbox
    models: ModelService
    agent: Agent
    watcher: ToolWatcher | None = None

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.toolbox.close()
        self.models.close()


def build_core(
    config: DaemonConfig,
    *,
    on_change: Callable[[ToolSetChange], None] | None = None,
    model_loader: ModelLoader | None = None,
) -> Core:
    """The services for `config`. With `on_change`, a watcher loads the tools in the background
    and reports every later change to it (a long-running face); without, call `load_tools`.
    `model_loader` replaces the llama.cpp backend (tests script one)."""
    approvals = approvals_for(config)
    toolbox = Toolbox(
        new_host(config),
        list(config.watched_dirs()),
        trusted_dirs=config.trusted_dirs(),
        approvals=approvals,
    )
    toolbox.workspace = config.workspace
    models = ModelService(config.model_settings(), config.cache_dir, model_loader)
    core = Core(config, approvals, toolbox, models, Agent(toolbox, models))
    if on_change is not None:
        core.watcher = ToolWatcher(toolbox, on_change, approvals.grants_file)
        core.watcher.start()
    return core


def load_tools(core: Core) -> Core:
    """Load the tools once, now (a one-shot face: no watcher)."""
    core.toolbox.load_all()
    return core
