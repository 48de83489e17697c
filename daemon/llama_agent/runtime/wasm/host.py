"""Loads tool components and runs each call in a fresh, sandboxed instance in a worker process.

The daemon compiles components (into a signed cache) and reads their exports; guest code itself,
`describe()` included, runs only in worker processes (workers.py), so a deadline or
a cancel ends a call wherever it is and a call's memory never becomes the daemon's.

Thread-safe: `load` and `invoke` are blocking calls meant for worker threads; `invoke_async` is
`invoke` for a caller on an event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime

from llama_agent.runtime.storage.files import RefusedFile, read_component
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ToolMetadata
from llama_agent.runtime.tools.policy import Grants
from llama_agent.runtime.wasm.compile_cache import Artifact, CompileCache
from llama_agent.runtime.wasm.confine import Mode, mode_from_environment, warn_if_unavailable
from llama_agent.runtime.wasm.contracts import Contract, IncompatibleComponent, detect_contract
from llama_agent.runtime.wasm.executor import (
    ENGINE_TAG_SUFFIX,
    Invocation,
    Sandbox,
    first_line,
    new_engine,
    refused,
)
from llama_agent.runtime.wasm.messages import (
    Cancelled,
    CompiledTool,
    Confinement,
    Crashed,
    Described,
    DescribeJob,
    Done,
    Failed,
    InvokeJob,
    Outcome,
    QuotaExceeded,
    TimedOut,
)
from llama_agent.runtime.wasm.workers import CancelToken, WorkerPool

log = logging.getLogger(__name__)

WASMTIME_VERSION = version("wasmtime")
# `describe()` returns constants; a tool that takes longer is not loaded, and a reload waits no
# longer than this for it.
DESCRIBE_TIMEOUT_SECONDS = 2.0

__all__ = ["Invocation", "LoadedTool", "ToolLoadError", "WasmHost"]


class ToolLoadError(Exception):
    """A file that cannot be served as a tool; the message says why."""


@dataclass(frozen=True)
class LoadedTool:
    path: Path
    content_hash: str
    metadata: ToolMetadata
    contract: Contract
    artifact: Artifact
    from_cache: bool
    load_seconds: float


class WasmHost:
    """One engine, one signed compile cache, and the worker processes that run guest code.

    Workers are confined by the operating system (confine.py) as `confinement` says: required,
    best-effort (the default) or off; None reads `LLAMA_AGENT_CONFINEMENT`."""

    def __init__(
        self,
        cache_dir: Path,
        limits: Limits | None = None,
        *,
        max_parallel_calls: int = 8,
        confinement: Mode | None = None,
        cache_read_only: bool = False,
    ) -> None:
        self.limits = limits or Limits()
        self.cache_dir = cache_dir
        self.engine = new_engine()
        # The cache in `cache_dir` if it is the person's own, else one of this process's own;
        # `cache_read_only`: a cache sealed beforehand, only read (compile_cache.py).
        opening = CompileCache.open_read_only if cache_read_only else CompileCache.open
        self._cache = opening(cache_dir, self.engine, f"wasmtime-{WASMTIME_VERSION}-{ENGINE_TAG_SUFFIX}")
        mode = confinement or mode_from_environment()
        warn_if_unavailable(mode)
        # Workers read compiled components from the cache's entries, never its signing key.
        readable = tuple(str(directory) for directory in self._cache.readable_directories)
        self.confinement = Confinement(mode, readable=readable)
        self.workers = WorkerPool(max_parallel_calls)

    def close(self) -> None:
        self.workers.close()
        self._cache.close()

    # -- loading ------------------------------------------------------------------------

    def load(self, path: Path) -> LoadedTool:
        try:
            wasm = read_component(path)
        except RefusedFile as error:
            raise ToolLoadError(str(error)) from error
        except OSError as error:
            raise ToolLoadError(f"cannot read {path}: {error.strerror or error}") from error
        return self.load_bytes(wasm, path)

    def precompile(self, path: Path) -> None:
        """Fill the compile cache for `path` (no-op if cached or unreadable)."""
        try:
            wasm = read_component(path)
        except OSError:
            return
        self._cache.ensure(wasm, hashlib.sha256(wasm).hexdigest())

    def seal(self, tools: Iterable[LoadedTool]) -> int:
        """Seal the compile cache in `cache_dir` for replicas that only read it, with the entries of
        `tools` (loaded by this host): CompileCache.seal. Returns how many were sealed."""
        return self._cache.seal(self.cache_dir, [(tool.content_hash, tool.artifact) for tool in tools])

    def load_bytes(
        self, wasm: bytes, path: Path, content_hash: str | None = None, limits: Limits | None = None
    ) -> LoadedTool:
        """Compile (or fetch from the cache) and describe; `describe()` runs within `limits`."""
        started = time.perf_counter()
        content_hash = content_hash or hashlib.sha256(wasm).hexdigest()
        try:
            component, artifact, from_cache = self._cache.load(wasm, content_hash)
        except wasmtime.WasmtimeError as error:
            raise ToolLoadError(f"not a valid WebAssembly component: {first_line(error)}") from error
        except OSError as error:
            raise ToolLoadError(
                f"cannot write the compile cache in {self._cache.directory}: {error}"
            ) from error
        try:
            contract = detect_contract(component, self.engine)
        except IncompatibleComponent as error:
            raise ToolLoadError(str(error)) from error
        del component  # the daemon keeps no compiled code; workers map it from the cache entry
        metadata = self._describe(artifact, contract, limits or self.limits)
        return LoadedTool(
            path=path,
            content_hash=content_hash,
            metadata=metadata,
            contract=contract,
            artifact=artifact,
            from_cache=from_cache,
            load_seconds=time.perf_counter() - started,
        )

    def _describe(self, artifact: Artifact, contract: Contract, limits: Limits) -> ToolMetadata:
        timeout = min(limits.timeout_seconds, DESCRIBE_TIMEOUT_SECONDS)
        job = DescribeJob(_compiled(artifact, contract), limits, confinement=self.confinement)
        outcome = self.workers.run(job, timeout, loading=True)
        if isinstance(outcome, Described):
            try:
                outcome.metadata.check()  # checked in the worker too: this is what the daemon serves
            except ValueError as error:
                raise ToolLoadError(str(error)) from error
            return outcome.metadata
        if isinstance(outcome, TimedOut):
            raise ToolLoadError(f"reading metadata failed: describe() did not return within {timeout:g} s")
        if isinstance(outcome, Failed | Crashed) and outcome.error:
            raise ToolLoadError(outcome.error)
        raise ToolLoadError(f"reading metadata failed ({_ending(outcome)})")

    # -- invoking -----------------------------------------------------------------------

    def invoke(
        self,
        tool: LoadedTool,
        arguments: dict[str, Any],
        grants: Grants | None = None,
        cancel: CancelToken | None = None,
    ) -> Invocation:
        """Run one call in a fresh instance with `grants` (default: the host's limits, nothing else).

        Arguments must already be validated and coerced. `cancel` ends the call from another thread.
        """
        grants = grants or self.default_grants
        started = time.perf_counter()
        job = _invoke_job(tool, arguments, grants, self.confinement)
        if isinstance(job, str):
            return refused(job, started)
        outcome = self.workers.run(job, grants.limits.timeout_seconds, cancel=cancel)
        return _invocation(outcome, grants.limits, started)

    async def invoke_async(
        self,
        tool: LoadedTool,
        arguments: dict[str, Any],
        grants: Grants,
        cancel: CancelToken,
        executor: ThreadPoolExecutor | None = None,
    ) -> Invocation:
        """`invoke` for a caller on an event loop (see WorkerPool.run_async); `cancel` ends it."""
        started = time.perf_counter()
        job = _invoke_job(tool, arguments, grants, self.confinement)
        if isinstance(job, str):
            return refused(job, started)
        timeout = grants.limits.timeout_seconds
        outcome = await self.workers.run_async(job, timeout, cancel=cancel, executor=executor)
        return _invocation(outcome, grants.limits, started)

    @property
    def default_grants(self) -> Grants:
        return Grants(limits=self.limits)


def _invoke_job(
    tool: LoadedTool, arguments: dict[str, Any], grants: Grants, confinement: Confinement
) -> InvokeJob | str:
    """The job that runs one call, or why it cannot run."""
    moved = [grant.host for grant in grants.dirs if not grant.still_granted()]
    if moved:
        return (
            f"cannot run: the granted directory {moved[0]} is no longer the directory that was "
            "granted (it was removed or replaced, or a symlink now stands in its path)"
        )
    sandbox = Sandbox(
        grants.limits,
        dirs=tuple((str(d.host), d.guest, d.mode == "rw") for d in grants.dirs),
        env=tuple((name, os.environ[name]) for name in grants.env if name in os.environ),
    )
    return InvokeJob(_compiled(tool.artifact, tool.contract), sandbox, arguments, confinement=confinement)


def _compiled(artifact: Artifact, contract: Contract) -> CompiledTool:
    return CompiledTool(str(artifact.path), artifact.sha256, contract)


def _invocation(outcome: Outcome, limits: Limits, started: float) -> Invocation:
    elapsed_ms = (time.perf_counter() - started) * 1000
    if isinstance(outcome, Done):
        return replace(outcome.outcome, duration_ms=elapsed_ms)
    if isinstance(outcome, TimedOut):
        text = f"timed out after {limits.timeout_seconds:g} s: the call was stopped (its process ended)"
        return Invocation.failure(text, elapsed_ms, timed_out=True)
    if isinstance(outcome, QuotaExceeded):
        text = (
            f"stopped: the call wrote {outcome.written:,} bytes, more than its "
            f"{limits.write_bytes:,}-byte write quota (write_mib in its policy)"
        )
        return Invocation.failure(text, elapsed_ms)
    if isinstance(outcome, Cancelled):
        return Invocation.failure("cancelled", elapsed_ms)
    reason = outcome.error if isinstance(outcome, Failed | Crashed) and outcome.error else _ending(outcome)
    return Invocation.failure(f"the call failed: {reason}", elapsed_ms)


def _ending(outcome: Outcome) -> str:
    """How a job ended that its caller did not expect, for a message."""
    if isinstance(outcome, Described):
        return "the worker answered with metadata"
    if isinstance(outcome, Done):
        return "the worker answered with a call's result"
    return type(outcome).__name__
