"""The composition root: the services every face of the daemon shares, built in one place.

`open_core` alone builds services (the tool registry and its watcher, grants, the model, the
agent); faces and commands receive the `Core` and never wire services themselves. A core is a
context manager: leaving it stops the watcher, the tool workers and the model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from llama_agent.config import DaemonConfig
from llama_agent.runtime.models.backend import ModelLoader
from llama_agent.services.agent.loop import Agent
from llama_agent.services.consent.approvals import Approvals, approvals_for
from llama_agent.services.models import ModelService
from llama_agent.services.tools.registry import Toolbox, ToolSetChange, new_host
from llama_agent.services.tools.watcher import ToolWatcher

log = logging.getLogger(__name__)

ChangeListener = Callable[[ToolSetChange], None]


@dataclass
class Core:
    config: DaemonConfig
    approvals: Approvals
    toolbox: Toolbox
    models: ModelService
    agent: Agent
    watcher: ToolWatcher | None = None
    _listeners: list[ChangeListener] = field(default_factory=list)
    _listeners_lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call `listener` (from the watcher's thread) with every later change of the tool set;
        returns what unsubscribes it."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _changed(self, change: ToolSetChange) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:  # one face's failure never stops another's announcements
                log.exception("a tool-set listener failed")

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.toolbox.close()
        self.models.close()

    def __enter__(self) -> Core:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_core(config: DaemonConfig, *, watch: bool, model_loader: ModelLoader | None = None) -> Core:
    """The services for `config`.

    `watch=True` (a long-running face): a watcher loads the tools in the background, keeps them
    equal to their directories and tells `Core.subscribe`rs of every change; requests wait for the
    first load (`toolbox.ready()`). `watch=False` (a one-shot command): the tools are loaded now.
    `model_loader` replaces the llama.cpp backend (tests script one).
    """
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
    try:
        if watch:
            core.watcher = ToolWatcher(toolbox, core._changed, approvals.grants_file)
            core.watcher.start()
        else:
            toolbox.load_all()
    except BaseException:
        core.close()
        raise
    return core
