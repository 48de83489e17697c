"""The set of loaded tools, kept equal to the tool files on disk, and validated invocation.

`reconcile()` compares the tool directories with what is loaded and loads, swaps
or drops tools to match. Readers only ever see a complete `ToolSet`: a new one is
built on the side and published by swapping one reference, so a reload is never
half-applied and calls already running finish on the version they started with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llama_agent.common.errors import InvalidParams
from llama_agent.common.paths import default_config_dir
from llama_agent.common.text import visible
from llama_agent.runtime.storage.files import read_component
from llama_agent.runtime.telemetry.calls import observe_call
from llama_agent.runtime.tools.grants_file import request_digest
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import (
    POLICY_SUFFIX,
    Grants,
    PolicyError,
    Protected,
    load_policy_document,
    parse_policy,
    policy_path,
)
from llama_agent.runtime.tools.schema import ArgumentError, coerce_arguments, input_schema, validate_arguments
from llama_agent.runtime.wasm.host import Invocation, LoadedTool, ToolLoadError, WasmHost
from llama_agent.runtime.wasm.workers import CancelToken
from llama_agent.services.consent.approvals import (
    TRUSTED_DIRECTORY,
    Approvals,
    PendingRequest,
    asks_beyond_defaults,
)
from llama_agent.services.tools.settings import BUNDLED_TOOLS_DIR, ToolSettings
from llama_agent.services.tools.workspace import Workspace, WorkspaceMode, workspace_grant

log = logging.getLogger(__name__)

TOOL_SUFFIX = ".wasm"
# A file modified more recently than this may still be being written: look again later.
SETTLE_SECONDS = 0.03


class UnknownTool(InvalidParams, LookupError):
    def __init__(self, name: str, available: Iterable[str]) -> None:
        known = ", ".join(sorted(available)) or "none are loaded"
        super().__init__(f"unknown tool {name!r} (available: {known})", data={"tool": name})
        self.name = name


@dataclass(frozen=True)
class LoadFailure:
    path: Path
    error: str


@dataclass(frozen=True)
class Tool:
    """A loaded tool as the rest of the daemon sees it: the component and what it is granted."""

    loaded: LoadedTool
    input_schema: dict[str, Any]
    grants: Grants = field(default_factory=Grants)
    policy_error: str | None = None
    # What its policy asks beyond `grants` while nobody has approved it (it runs with `grants`).
    pending: PendingRequest | None = None
    # How its policy's request was approved (TRUSTED_DIRECTORY, GRANTS_FILE, THIS_SESSION).
    granted_by: str | None = None
    # The digest of what its policy asks (grants_file.request_digest); "" without a policy.
    request_sha256: str = ""
    # The mode its calls get the calling session's workspace in (its policy's `workspace = ...`,
    # once approved); the workspace is not among `grants`: each session grants its own.
    workspace: WorkspaceMode | None = None

    @property
    def name(self) -> str:
        return self.loaded.metadata.name

    @property
    def writes(self) -> bool:
        """Whether it was granted a directory it may write to (a session's workspace included)."""
        return self.workspace == "rw" or any(grant.mode == "rw" for grant in self.grants.dirs)


@dataclass(frozen=True)
class ToolSet:
    """An immutable snapshot of the served tools and of the files that failed to load."""

    tools: dict[str, Tool]
    failures: tuple[LoadFailure, ...]
    # Requests waiting for the person: of served tools, and of files that did not load without them.
    pending: tuple[PendingRequest, ...] = ()


@dataclass(frozen=True)
class ToolSetChange:
    """What one reconcile changed, by tool name; `failed` lists failures new in this change."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    failed: tuple[LoadFailure, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.failed)


@dataclass(frozen=True)
class CallResult:
    tool: Tool
    invocation: Invocation

    def texts(self) -> list[str]:
        """What the tool returned, then what it printed; one empty text if neither."""
        texts = [text for text in (self.invocation.text, self.invocation.stdout) if text]
        if self.invocation.truncated:
            texts.append("[output truncated]")
        return texts or [""]


Signature = tuple[int, int]  # (size, mtime_ns): cheap change detection


@dataclass(frozen=True)
class _FileState:
    """What is known about one tool file: its last working load, its last error, its grants."""

    signature: tuple[Signature, Signature | None]  # the .wasm and its policy file
    content_hash: str
    loaded: LoadedTool | None
    error: str | None
    grants: Grants = field(default_factory=Grants)  # in effect: the request if approved, else defaults
    policy_error: str | None = None
    request: _Request | None = None  # None: no policy file
    load_limits: Limits | None = None  # what describe() ran with
    # How the request is approved for loading (under any name), and for serving (under its name).
    load_granted_by: str | None = None
    granted_by: str | None = None
    workspace: WorkspaceMode | None = None  # in effect: the request's, if approved


@dataclass(frozen=True)
class _Request:
    """What a tool's policy file asks for; `grants` is None when it cannot be applied (`error`)."""

    grants: Grants | None = None
    digest: str = ""
    error: str | None = None
    workspace: WorkspaceMode | None = None
    asks: bool = False  # for more than the defaults: needs an approval


@dataclass
class ReconcileResult:
    change: ToolSetChange
    unsettled: list[Path] = field(default_factory=list)


def new_host(tools: ToolSettings, cache_dir: Path, *, read_only: bool = False) -> WasmHost:
    """The Wasm host of the tools section, compiling into `cache_dir` (`read_only`: only reading
    it, compiling what it lacks for this process alone)."""
    return WasmHost(cache_dir, Limits(timeout_seconds=tools.timeout_seconds), cache_read_only=read_only)


def discover(directories: Iterable[Path]) -> list[Path]:
    """Every `*.wasm` entry, in directory order, then by file name: the order that decides name
    clashes between files of equal standing (see `Toolbox._precedence`).

    Entries of every kind: one that is no regular file (a FIFO, a device, a directory, a dangling
    symlink) is not read, but reported (`refusal`), so that nobody wonders why it is not served.
    """
    found: list[Path] = []
    for directory in dict.fromkeys(directories):
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        found.extend(p for p in entries if p.suffix == TOOL_SUFFIX)
    return found


# What an entry is, by its file type, when it is no regular file.
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def refusal(path: Path) -> str | None:
    """Why the tool file `path` is not read, told from its metadata alone, without opening it
    (opening a FIFO waits for a writer, opening a device may do anything); None for a regular
    file, or for one that is gone. Reading it checks again, on the descriptor it reads."""
    shown, target = visible(str(path)), _link_target(path)
    try:
        mode = path.stat().st_mode  # follows symlinks: what matters is what would be read
    except FileNotFoundError:
        if target is None:
            return None  # removed meanwhile
        return f"{shown} is a symbolic link to {visible(target)}, which does not exist"
    except OSError as error:  # a symlink loop, a directory on the way that may not be searched
        return f"cannot read {shown}: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return None
    kind = _FILE_KINDS.get(stat.S_IFMT(mode), "of an unknown kind")
    through = "" if target is None else f" (through the symbolic link to {visible(target)})"
    return f"{shown} is not a regular file but {kind}{through}: only regular files are read as tools"


def _link_target(path: Path) -> str | None:
    """Where the symlink `path` points; None if it is none (or is gone)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def _signature(path: Path) -> Signature | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _entry_signature(path: Path) -> Signature:
    """`_signature` of the entry itself (a symlink, not what it leads to), (0, 0) if it is gone."""
    try:
        info = path.lstat()
    except OSError:
        return 0, 0
    return info.st_size, info.st_mtime_ns


class Toolbox:
    """Loads tools from directories and invokes them on worker threads.

    A policy beside a tool only asks: its grants apply when the tool lies in one of `trusted_dirs`
    or `approvals` approve that request of that component. When two files claim one tool name, one
    from a trusted directory wins over one that is not, then a file named after the tool, then the
    first in discovery order (the order of the directories, then file name); the others are
    reported as failures. A file that fails to load never replaces the working version loaded
    from it before. A tenant's toolbox has a `boundary` (its workspace root): a policy asking for
    a directory outside it, or for an environment variable, is refused whoever would approve it.
    """

    def __init__(
        self,
        host: WasmHost,
        directories: list[Path],
        max_parallel_calls: int = 8,
        *,
        trusted_dirs: Iterable[Path] = (BUNDLED_TOOLS_DIR,),
        approvals: Approvals | None = None,
        boundary: Path | None = None,
    ) -> None:
        self.host = host
        self.directories = directories
        self._files: dict[Path, _FileState] = {}
        self._snapshot = ToolSet({}, ())
        self._reconcile_lock = threading.Lock()
        self._first_load: Future[ToolSet] = Future()
        self._closing = False
        self._call_pool = ThreadPoolExecutor(max_workers=max_parallel_calls, thread_name_prefix="tool-call")
        self._running_calls: set[Future[None]] = set()
        self._calls_lock = threading.Lock()
        self._trusted = frozenset(_real(directory) for directory in trusted_dirs)
        self._approvals = approvals or Approvals()
        # What no policy may grant (the root, $HOME, the compile cache, and for writing the tools
        # and the person's grants file).
        self._protected = Protected.for_daemon(
            directories, host.cache_dir, self._approvals.config_dir or default_config_dir()
        )
        if boundary is not None:  # a tenant's: nothing granted outside its workspace root
            self._protected = self._protected.within(boundary)

    @property
    def protected(self) -> Protected:
        """What no grant may give, a session's workspace included."""
        return self._protected

    def grants_in(self, tool: Tool, workspace: Workspace | None) -> Grants:
        """What a call of `tool` runs with in a session whose folder is `workspace`: its own grants,
        and the workspace at /workspace when its (approved) policy asks for it. Raises
        WorkspaceRefused when that folder cannot be granted."""
        if tool.workspace is None or workspace is None:
            return tool.grants
        grant = workspace_grant(workspace, tool.workspace, self._protected, tool.name)
        return replace(tool.grants, dirs=(grant, *tool.grants.dirs))

    @property
    def snapshot(self) -> ToolSet:
        return self._snapshot

    # -- loading ------------------------------------------------------------------------

    def warm_cache(self) -> None:
        """Blocking: compile every uncached tool, one per core at once.

        The engine compiles each component on one thread (so that a hot reload leaves a core
        to the calls being served); before the first load nothing is being served yet.
        """
        paths = [path for path in discover(self.directories) if refusal(path) is None]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="precompile") as pool:
            list(pool.map(self.host.precompile, paths))

    def load_all(self) -> ToolSet:
        """Blocking one-shot load (no watcher): waits out files that are still being written."""
        self.warm_cache()
        result = self.reconcile()
        while result.unsettled:
            time.sleep(SETTLE_SECONDS)
            result = self.reconcile(result.unsettled)
        return self._snapshot

    def reconcile(self, touched: Iterable[Path] = ()) -> ReconcileResult:
        """Blocking: bring the loaded set in line with the files; publish and return the change.

        Files whose size and mtime are unchanged are skipped unless `touched`.
        """
        with self._reconcile_lock:
            result = ReconcileResult(ToolSetChange())
            touched_paths = {_tool_file(Path(p)) for p in touched}
            by_hash = {s.content_hash: s.loaded for s in self._files.values() if s.loaded}
            files: dict[Path, _FileState] = {}
            for path in discover(self.directories):
                state = self._refresh(path, path in touched_paths, by_hash, result)
                if state is not None:
                    files[path] = state
            old = self._snapshot
            self._files = files
            self._snapshot = self._build_snapshot(files)
            result.change = _diff(old, self._snapshot)
        if not self._first_load.done():
            self._first_load.set_result(self._snapshot)
        return result

    def _refresh(
        self,
        path: Path,
        touched: bool,
        by_hash: dict[str, LoadedTool],
        result: ReconcileResult,
    ) -> _FileState | None:
        previous = self._files.get(path)
        refused = refusal(path)
        if refused is not None:
            return self._refused(path, previous, refused)
        wasm_signature = _signature(path)
        if wasm_signature is None:
            return None
        signature = (wasm_signature, _signature(policy_path(path)))
        self._approvals.refresh()  # a stat, unless the grants file changed
        unchanged = previous is not None and previous.signature == signature and not touched
        if unchanged and previous is not None and not self._approval_changed(path, previous):
            return previous
        if time.time_ns() - wasm_signature[1] < SETTLE_SECONDS * 1e9:
            result.unsettled.append(path)
            return previous
        request = self._request(path)
        try:
            wasm = read_component(path)
        except OSError as error:
            kept = previous.loaded if previous else None
            return self._approve(path, _FileState(signature, "", kept, str(error), request=request))
        if _signature(path) != wasm_signature or len(wasm) != wasm_signature[0]:
            result.unsettled.append(path)  # written to while we read it
            return previous
        content_hash = hashlib.sha256(wasm).hexdigest()
        # describe() runs with the requested limits once the person approved these bytes' request.
        load_granted_by = self._granted_by(path, request, content_hash, names=None)
        load_limits = self._effective(request, load_granted_by).limits
        loading = _FileState(
            signature,
            content_hash,
            None,
            None,
            request=request,
            load_limits=load_limits,
            load_granted_by=load_granted_by,
        )
        # A failed load is tried again when the limits change: more memory may be all it needed.
        same_load = previous is not None and (
            previous.loaded is not None or previous.load_limits == load_limits
        )
        if previous is not None and same_load and previous.content_hash == content_hash:
            return self._approve(path, replace(loading, loaded=previous.loaded, error=previous.error))
        reusable = by_hash.get(content_hash)
        if reusable is not None:  # renamed or copied: no need to load again
            return self._approve(path, replace(loading, loaded=replace(reusable, path=path)))
        try:
            loaded = self.host.load_bytes(wasm, path, content_hash, load_limits)
        except ToolLoadError as error:
            log.error("cannot load %s: %s", path, error)
            kept = previous.loaded if previous else None
            return self._approve(path, replace(loading, loaded=kept, error=str(error)))
        log.info(
            "loaded tool %s %s from %s in %.2f s%s",
            loaded.metadata.name,
            loaded.metadata.version,
            path,
            loaded.load_seconds,
            " (cached)" if loaded.from_cache else "",
        )
        return self._approve(path, replace(loading, loaded=loaded))

    def _refused(self, path: Path, previous: _FileState | None, reason: str) -> _FileState:
        """The state of a tool file that is not read (see `refusal`); what it served before, if
        anything, it serves on, as after any failed load."""
        signature = (_entry_signature(path), _signature(policy_path(path)))
        if previous is not None and previous.signature == signature and previous.error == reason:
            return previous
        kept = previous.loaded if previous else None
        return self._approve(path, _FileState(signature, "", kept, reason, request=self._request(path)))

    def _request(self, path: Path) -> _Request | None:
        """What the tool's policy file asks for; None if it has none."""
        policy = policy_path(path)
        if not policy.exists():
            return None
        try:
            document = load_policy_document(policy)
            grants = parse_policy(
                document,
                policy.parent,
                self.host.limits,
                source=str(policy),
                protected=self._protected,
            )
        except PolicyError as error:
            log.error("ignoring %s, the tool gets the defaults: %s", policy, error)
            return _Request(error=str(error))
        workspace: WorkspaceMode | None = document.get("workspace")  # checked by parse_policy
        return _Request(
            grants,
            request_digest(document, policy.parent),
            workspace=workspace,
            asks=asks_beyond_defaults(grants, self.host.limits, workspace),
        )

    def _granted_by(
        self, path: Path, request: _Request | None, content_hash: str, names: set[str] | None
    ) -> str | None:
        """How the request is approved for that component under one of `names` (None: any name);
        None when it is not, or asks for nothing that needs approving."""
        if request is None or request.grants is None or not request.asks or not content_hash:
            return None
        if _real(path.parent) in self._trusted:
            return TRUSTED_DIRECTORY
        return self._approvals.granted_by(names, content_hash, request.digest)

    def _effective(self, request: _Request | None, granted_by: str | None) -> Grants:
        """What the tool gets: what its policy asks if that needs no approval or is approved; never
        more than the defaults otherwise."""
        if request is None or request.grants is None or (request.asks and granted_by is None):
            return self.host.default_grants
        return request.grants

    def _serving_approval(self, path: Path, state: _FileState) -> str | None:
        """The approval that holds for the component served from `path`, under its name (or, if it
        did not load, its file name): it binds the name, the component's hash and the request."""
        loaded = state.loaded
        content_hash = loaded.content_hash if loaded else state.content_hash
        names = {path.stem, loaded.metadata.name} if loaded else {path.stem}
        return self._granted_by(path, state.request, content_hash, names)

    def _approve(self, path: Path, state: _FileState) -> _FileState:
        granted_by = self._serving_approval(path, state)
        request = state.request
        grants = self._effective(request, granted_by)
        return replace(
            state,
            grants=grants,
            policy_error=request.error if request else None,
            granted_by=granted_by,
            workspace=request.workspace if request and grants is request.grants else None,
        )

    def _approval_changed(self, path: Path, state: _FileState) -> bool:
        """Whether an approval came or went (the grants file changed, the person answered)."""
        load_granted_by = self._granted_by(path, state.request, state.content_hash, names=None)
        return (load_granted_by, self._serving_approval(path, state)) != (
            state.load_granted_by,
            state.granted_by,
        )

    def _pending(self, path: Path, state: _FileState) -> PendingRequest | None:
        request = state.request
        if request is None or request.grants is None or not request.asks or state.granted_by:
            return None
        loaded = state.loaded
        content_hash = loaded.content_hash if loaded else state.content_hash
        if not content_hash:
            return None
        return PendingRequest(
            name=loaded.metadata.name if loaded else path.stem,
            path=path,
            component_sha256=content_hash,
            policy_sha256=request.digest,
            grants=request.grants,
            defaults=self.host.limits,
            workspace=request.workspace,
            loaded=loaded is not None,
        )

    def _precedence(self, path: Path, name: str, position: int) -> tuple[bool, bool, int]:
        """Sorts first the file that wins a name clash: from a trusted directory, then named after
        the tool, then first in discovery order (directory order, then file name)."""
        return _real(path.parent) not in self._trusted, path.stem != name, position

    def _why_first(self, winner: Path, loser: Path, name: str) -> str:
        if (_real(winner.parent) in self._trusted) != (_real(loser.parent) in self._trusted):
            return "a trusted tools directory wins over one that is not"
        if (winner.stem == name) != (loser.stem == name):
            return "a file named after the tool wins over one that is not"
        if winner.parent == loser.parent:
            return "its file name sorts first"
        return "its directory comes first in the order of tools directories"

    def _build_snapshot(self, files: dict[Path, _FileState]) -> ToolSet:
        winners: dict[str, tuple[tuple[bool, bool, int], Path]] = {}
        for position, (path, state) in enumerate(files.items()):  # discovery order
            if state.loaded is not None:
                name = state.loaded.metadata.name
                rank = (self._precedence(path, name, position), path)
                winners[name] = min(winners.get(name, rank), rank)
        tools: dict[str, Tool] = {}
        failures: list[LoadFailure] = []
        pending: list[PendingRequest] = []
        previous = self._snapshot.tools
        for path, state in files.items():
            if state.error is not None:
                failures.append(LoadFailure(path, state.error))
            if state.policy_error is not None:
                failures.append(LoadFailure(policy_path(path), state.policy_error))
            request = self._pending(path, state)
            if state.loaded is None:
                pending.extend([request] if request else [])
                continue
            name = state.loaded.metadata.name
            winner = winners[name][1]
            if winner != path:
                why = self._why_first(winner, path, name)
                failures.append(
                    LoadFailure(path, f"tool name {name!r} is already provided by {winner} ({why})")
                )
                continue
            pending.extend([request] if request else [])
            tool = Tool(
                state.loaded,
                input_schema(state.loaded.metadata),
                state.grants,
                state.policy_error,
                request,
                state.granted_by,
                state.request.digest if state.request else "",
                state.workspace,
            )
            kept = previous.get(name)
            tools[name] = kept if kept == tool else tool
        return ToolSet(tools, tuple(failures), tuple(pending))

    async def ready(self) -> ToolSet:
        """Wait for the first load to finish (whoever runs it) and return the current set."""
        if not self._first_load.done():  # once it is, every call skips the wait (and its cost)
            await asyncio.wrap_future(self._first_load)
        self._first_load.result()  # a first load that failed fails each caller alike
        return self._snapshot

    # -- invoking -----------------------------------------------------------------------

    def prepare_call(self, name: str, arguments: object) -> tuple[Tool, dict[str, Any]]:
        """Resolve and validate a call. Raises UnknownTool or ArgumentError; never runs the tool."""
        tool = self._snapshot.tools.get(name)
        if tool is None:
            raise UnknownTool(name, self._snapshot.tools)
        validate_arguments(tool.input_schema, arguments)
        assert isinstance(arguments, dict)  # the schema says "object"
        return tool, coerce_arguments(tool.loaded.metadata, arguments)

    def invoke_blocking(self, name: str, arguments: object) -> CallResult:
        tool, coerced = self.prepare_call(name, arguments)
        return CallResult(tool, self.host.invoke(tool.loaded, coerced, tool.grants))

    async def invoke(self, name: str, arguments: object) -> CallResult:
        """A call with the tool's own grants (no session's workspace: see `Session.invoke`)."""
        await self.ready()
        tool, coerced = self.prepare_call(name, arguments)
        return await self.call(tool, coerced, tool.grants)

    async def call(self, tool: Tool, coerced: dict[str, Any], grants: Grants) -> CallResult:
        """Run a prepared call (`prepare_call`) with `grants`; cancellable."""
        if self._closing:
            raise RuntimeError("the toolbox is closed")
        running: Future[None] = Future()  # for close(), which waits for running calls
        with self._calls_lock:
            self._running_calls.add(running)
        running.add_done_callback(self._call_done)
        try:
            # Cancelling this task ends the call wherever it is: its worker process is killed.
            with observe_call(tool.name, grants.dirs) as observed:  # metrics, span, audit
                invocation = await self.host.invoke_async(
                    tool.loaded, coerced, grants, CancelToken(), executor=self._call_pool
                )
                observed.done(invocation)
        finally:
            running.set_result(None)
        return CallResult(tool, invocation)

    def _call_done(self, call: Future[None]) -> None:
        with self._calls_lock:
            self._running_calls.discard(call)

    def close(self, grace_seconds: float = 0.0) -> None:
        """Stop taking calls; let the calls already running finish for up to `grace_seconds`."""
        self._closing = True
        self._call_pool.shutdown(wait=False, cancel_futures=True)
        with self._calls_lock:
            running = set(self._running_calls)
        if running and grace_seconds > 0:
            _, unfinished = concurrent.futures.wait(running, timeout=grace_seconds)
            if unfinished:
                log.warning("stopping %d tool call(s) still running", len(unfinished))
        self.host.close()  # ends the worker processes, and with them any call still running


def _real(directory: Path) -> Path:
    return Path(os.path.realpath(directory))


def _tool_file(path: Path) -> Path:
    """A policy file stands for the tool it belongs to."""
    if path.name.endswith(POLICY_SUFFIX):
        return path.with_name(path.name.removesuffix(POLICY_SUFFIX) + TOOL_SUFFIX)
    return path


def _diff(old: ToolSet, new: ToolSet) -> ToolSetChange:
    def identity(tool: Tool) -> tuple[str, Path, Grants, WorkspaceMode | None, PendingRequest | None]:
        # A new request waiting for approval is a change too: the client may be asked about it.
        return tool.loaded.content_hash, tool.loaded.path, tool.grants, tool.workspace, tool.pending

    old_failures = set(old.failures)
    return ToolSetChange(
        added=tuple(sorted(new.tools.keys() - old.tools.keys())),
        removed=tuple(sorted(old.tools.keys() - new.tools.keys())),
        changed=tuple(
            sorted(
                name
                for name in new.tools.keys() & old.tools.keys()
                if identity(new.tools[name]) != identity(old.tools[name])
            )
        ),
        failed=tuple(f for f in new.failures if f not in old_failures),
    )


def ensure_directories(directories: Iterable[Path]) -> None:
    """Create missing tool directories, so they can be watched from the start."""
    for directory in directories:
        if not directory.is_dir():
            os.makedirs(directory, exist_ok=True)
            log.warning("tools directory %s did not exist: created it (empty)", directory)


ChangeListener = Callable[[ToolSetChange], None]

__all__ = [
    "ArgumentError",
    "CallResult",
    "ChangeListener",
    "LoadFailure",
    "Tool",
    "ToolSet",
    "ToolSetChange",
    "Toolbox",
    "UnknownTool",
]
