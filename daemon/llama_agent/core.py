"""The composition root: the services every face of the daemon shares, built in one place.

`open_core` alone builds services (the tool registry and its watcher, grants, the model, the
agent); faces and commands receive the `Core` and never wire services themselves. A core is a
context manager: leaving it stops the watcher, the tool workers and the model.

What is one client's (its workspace, its answers, its way of asking the person) is a session on
the core (services/sessions.py): faces open one per client with `Core.open_session`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from llama_agent.common.text import quoted, visible
from llama_agent.config import DaemonConfig
from llama_agent.runtime.models.backend import ModelLoader, ModelSettings
from llama_agent.runtime.models.llama import load_llama
from llama_agent.services.agent.loop import Agent
from llama_agent.services.consent.approvals import Approvals, approvals_for
from llama_agent.services.models import ModelService
from llama_agent.services.sessions import Asker, Session
from llama_agent.services.tools.registry import LoadFailure, Toolbox, ToolSetChange, new_host
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

    def open_session(
        self, *, workspace: Path | None, asker: Asker, allow_writes: bool | None = None
    ) -> Session:
        """A client's session: `workspace` granted to the tools that ask for it, `asker` the face's
        way of asking the person about calls that may write (`allow_writes`: approved up front;
        default: the config's `--allow-writes`)."""
        if allow_writes is None:
            allow_writes = self.config.session.allow_writes
        return Session(self.toolbox, self.agent, self.approvals, asker, workspace, allow_writes)

    async def warn_of_failures(self) -> None:
        """Log, as warnings, every tool file that does not load (a tool that claims a name already
        provided, by a bundled tool say, among them): those of the first load once it is done, and
        each new one after (for the faces whose clients are not told of them, as LSP's are)."""
        self.subscribe(lambda change: _warn_of(change.failed))
        _warn_of((await self.toolbox.ready()).failures)

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
    tools, cache_dir = config.tools, config.locations.cache_dir
    approvals = approvals_for(config.locations.config_dir, tools.watched_dirs())
    toolbox = Toolbox(
        new_host(tools, cache_dir),
        list(tools.watched_dirs()),
        trusted_dirs=config.trusted_dirs(),
        approvals=approvals,
    )
    models = ModelService(config.model, cache_dir, model_loader or backend_loader(config.model))
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


def backend_loader(settings: ModelSettings) -> ModelLoader:
    """How to load the model `settings` name: through an OpenAI-compatible server when they give
    one (`--backend openai`), else llama.cpp in-process."""
    if settings.remote is not None:
        # Imported only for the openai backend: its HTTP client adds about 60 ms to every start.
        from llama_agent.runtime.models.remote import connect_openai

        return connect_openai
    return load_llama


def _warn_of(failures: Iterable[LoadFailure]) -> None:
    for failure in failures:
        # The error may quote the file: both are the tool author's words.
        log.warning("cannot load tool %s: %s", quoted(str(failure.path)), visible(failure.error))
