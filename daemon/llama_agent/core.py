"""The composition root: the services every face of the daemon shares, built in one place.

`open_core` alone builds services (the tool registry and its watcher, grants, the model, the
agent); faces and commands receive the `Core` and never wire services themselves. A core is a
context manager: leaving it stops the watcher, the tool workers and the model.

What is one client's (its workspace, its answers, its way of asking the person) is a session on
the core (services/sessions.py): faces open one per client with `Core.open_session`.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from llama_agent.common.text import quoted, visible
from llama_agent.config import DaemonConfig, Locations
from llama_agent.runtime.models.backend import ModelLoader, ModelSettings
from llama_agent.runtime.models.llama import load_llama
from llama_agent.services.agent.loop import Agent
from llama_agent.services.consent.approvals import Approvals, approvals_for, grants_file_for
from llama_agent.services.models import ModelService
from llama_agent.services.sessions import Asker, Session
from llama_agent.services.tenants.config import Tenant, Tenants
from llama_agent.services.tenants.quotas import TenantQuota
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
    # False when the model service is shared (a service's tenants): its owner closes it.
    owns_models: bool = True
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
        self,
        *,
        workspace: Path | None,
        asker: Asker,
        allow_writes: bool | None = None,
        quota: TenantQuota | None = None,
    ) -> Session:
        """A client's session: `workspace` granted to the tools that ask for it, `asker` the face's
        way of asking the person about calls that may write (`allow_writes`: approved up front;
        default: the config's `--allow-writes`), `quota` its tenant's (None: no limits)."""
        if allow_writes is None:
            allow_writes = self.config.session.allow_writes
        return Session(self.toolbox, self.agent, self.approvals, asker, workspace, allow_writes, quota)

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
        if self.owns_models:
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


@dataclass(frozen=True)
class TenantScope:
    """What makes a core a service's tenant's (`open_tenant_core`)."""

    models: ModelService  # the shared model, left open by the core's `close`
    party: str  # the tenant's name: its runs take their turns at the model as this party
    grants_file: Path  # its own approvals
    boundary: Path  # its workspace root: no tool of its is granted anything outside, nor env


def open_core(
    config: DaemonConfig,
    *,
    watch: bool,
    model_loader: ModelLoader | None = None,
    tenant: TenantScope | None = None,
) -> Core:
    """The services for `config`.

    `watch=True` (a long-running face): a watcher loads the tools in the background, keeps them
    equal to their directories and tells `Core.subscribe`rs of every change; requests wait for the
    first load (`toolbox.ready()`). `watch=False` (a one-shot command): the tools are loaded now.
    `model_loader` replaces the llama.cpp backend (tests script one).

    A service's tenant (`open_tenant_core`) passes its `TenantScope`.
    """
    tools, cache_dir = config.tools, config.locations.cache_dir
    approvals = _approvals(config, tenant.grants_file if tenant else None)
    toolbox = Toolbox(
        new_host(tools, cache_dir, read_only=config.locations.cache_read_only),
        list(tools.watched_dirs()),
        trusted_dirs=config.trusted_dirs(),
        approvals=approvals,
        boundary=tenant.boundary if tenant else None,
    )
    if tenant is None:
        loader = model_loader or backend_loader(config.model)
        models = ModelService(config.model, model_cache_dir(config.locations), loader)
        agent = Agent(toolbox, models)
    else:
        models, agent = tenant.models, Agent(toolbox, tenant.models, tenant.party)
    core = Core(config, approvals, toolbox, models, agent, owns_models=tenant is None)
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


def _approvals(config: DaemonConfig, grants_file: Path | None) -> Approvals:
    watched = config.tools.watched_dirs()
    if grants_file is None:
        return approvals_for(config.locations.config_dir, watched)
    # The default file's rule: never inside a tools directory, whose tools would approve themselves.
    usable = grants_file_for(grants_file.parent, watched) is not None
    return Approvals(grants_file if usable else None)


@dataclass
class Service:
    """A shared deployment's services: one model, and a core per tenant (its own tools, worker
    processes, grants file and watcher; its runs take turns at the model as its own party).

    The tenants may change while it runs (the tenants file reloaded): `open_tenant` opens a new
    tenant's core, and the face puts it in `cores`, on its event loop, once it is open."""

    models: ModelService
    cores: dict[str, Core]
    quotas: dict[str, TenantQuota]  # each tenant's, which its sessions are held to
    config: DaemonConfig
    scratch: Path | None = None  # a directory of this process's own, removed by `close`

    def open_tenant(self, tenant: Tenant) -> Core:
        """Blocking: `tenant`'s core (its watcher loads its tools in the background), not yet in
        `cores`."""
        return open_tenant_core(self.config, tenant, self.models)

    def close(self) -> None:
        for core in self.cores.values():
            core.close()
        self.models.close()
        if self.scratch is not None:  # (the service ends with os._exit: no atexit handler runs)
            shutil.rmtree(self.scratch, ignore_errors=True)


def open_service(config: DaemonConfig, tenants: Tenants, model_loader: ModelLoader | None = None) -> Service:
    """The services of `tenants`, over the shared tools directories of `config` (each tenant adds
    its own) and one model."""
    loader = model_loader or backend_loader(config.model)
    models_dir = model_cache_dir(config.locations)
    models = ModelService(config.model, models_dir, loader)
    scratch = models_dir if config.locations.cache_read_only else None
    service = Service(models, {}, {}, config, scratch)
    try:
        for tenant in tenants:
            service.cores[tenant.name] = service.open_tenant(tenant)
            service.quotas[tenant.name] = TenantQuota(tenant.limits)
    except BaseException:
        service.close()
        raise
    return service


def open_tenant_core(config: DaemonConfig, tenant: Tenant, models: ModelService) -> Core:
    """`tenant`'s core: the shared tools directories and its own, its grants file, `models` shared."""
    tools = replace(config.tools, directories=(*config.tools.directories, *tenant.tools_dirs))
    session = replace(config.session, workspace=tenant.workspace_root)
    scope = TenantScope(
        models, tenant.name, tenant.grants_path(config.locations.config_dir), tenant.workspace_root
    )
    return open_core(replace(config, tools=tools, session=session), watch=True, tenant=scope)


def model_cache_dir(locations: Locations) -> Path:
    """Where the model service keeps downloaded models and evaluated prompt states: the cache
    directory, unless it is read-only (`--cache-read-only`, a replica's shared cache): then a
    directory of this process's own, removed at exit (a replica's model is a server of its own)."""
    if not locations.cache_read_only:
        return locations.cache_dir
    directory = Path(tempfile.mkdtemp(prefix="llama-agent-models-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


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
