"""Loads tool components and runs each call in a fresh, sandboxed instance in a worker process.

The daemon compiles components (into a signed cache) and reads their exports; guest code itself,
`describe()` included, runs only in worker processes (workers.py), so a deadline or
a cancel ends a call wherever it is and a call's memory never becomes the daemon's.

Thread-safe: `load` and `invoke` are blocking calls meant for worker threads; `invoke_async` is
`invoke` for a caller on an event loop.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime

from llama_agent.runtime.storage.files import RefusedFile, read_component
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ToolMetadata, metadata_from_dict
from llama_agent.runtime.tools.policy import Grants
from llama_agent.runtime.wasm.compile_cache import Artifact, CompileCache
from llama_agent.runtime.wasm.contracts import Contract, IncompatibleComponent, detect_contract
from llama_agent.runtime.wasm.executor import ENGINE_TAG_SUFFIX, Invocation, first_line, new_engine, refused
from llama_agent.runtime.wasm.workers import CancelToken, Reply, WorkerPool

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
    """One engine, one signed compile cache, and the worker processes that run guest code."""

    def __init__(
        self,
        cache_dir: Path,
        limits: Limits | None = None,
        *,
        max_parallel_calls: int = 8,
    ) -> None:
        self.limits = limits or Limits()
        self.cache_dir = cache_dir
        self.engine = new_engine()
        # The cache in `cache_dir` if it is the person's own, else one of this process's own.
        self._cache = CompileCache.open(
            cache_dir, self.engine, engine_tag=f"wasmtime-{WASMTIME_VERSION}-{ENGINE_TAG_SUFFIX}"
        )
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
        job = _job("describe", artifact, contract, Grants(limits=limits))
        reply = self.workers.run(job, timeout, loading=True)
        if reply.kind == "described":
            try:
                metadata = metadata_from_dict(reply.body["metadata"])
                metadata.check()
            except (KeyError, TypeError, ValueError) as error:
                raise ToolLoadError(str(error)) from error
            return metadata
        if reply.kind == "timeout":
            raise ToolLoadError(f"reading metadata failed: describe() did not return within {timeout:g} s")
        raise ToolLoadError(reply.error or f"reading metadata failed ({reply.kind})")

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
        job = _invoke_job(tool, arguments, grants)
        if isinstance(job, str):
            return refused(job, started)
        reply = self.workers.run(job, grants.limits.timeout_seconds, cancel=cancel)
        return _invocation(reply, grants.limits, started)

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
        job = _invoke_job(tool, arguments, grants)
        if isinstance(job, str):
            return refused(job, started)
        timeout = grants.limits.timeout_seconds
        reply = await self.workers.run_async(job, timeout, cancel=cancel, executor=executor)
        return _invocation(reply, grants.limits, started)

    @property
    def default_grants(self) -> Grants:
        return Grants(limits=self.limits)


def _invoke_job(tool: LoadedTool, arguments: dict[str, Any], grants: Grants) -> dict[str, Any] | str:
    """The job that runs one call, or why it cannot run."""
    moved = [grant.host for grant in grants.dirs if not grant.still_granted()]
    if moved:
        return (
            f"cannot run: the granted directory {moved[0]} is no longer the directory that was "
            "granted (it was removed or replaced, or a symlink now stands in its path)"
        )
    return {**_job("invoke", tool.artifact, tool.contract, grants), "arguments": arguments}


def _job(op: str, artifact: Artifact, contract: Contract, grants: Grants) -> dict[str, Any]:
    return {
        "op": op,
        "artifact": str(artifact.path),
        "digest": artifact.sha256,
        "contract": contract.to_wire(),
        "limits": _limits_wire(grants.limits),
        "dirs": [[str(d.host), d.guest, d.mode == "rw"] for d in grants.dirs],
        "env": [[name, os.environ[name]] for name in grants.env if name in os.environ],
    }


@functools.lru_cache(maxsize=256)
def _limits_wire(limits: Limits) -> dict[str, Any]:
    """`limits` as a job carries them (made once per value: `asdict` costs a call ~10 µs)."""
    return asdict(limits)


def _invocation(reply: Reply, limits: Limits, started: float) -> Invocation:
    elapsed_ms = (time.perf_counter() - started) * 1000
    if reply.kind == "done":
        body = reply.body
        return Invocation(
            text=str(body["text"]),
            is_error=bool(body["is_error"]),
            stdout=str(body["stdout"]),
            stderr=str(body["stderr"]),
            truncated=bool(body["truncated"]),
            timed_out=bool(body["timed_out"]),
            duration_ms=elapsed_ms,
        )
    if reply.kind == "timeout":
        text = f"timed out after {limits.timeout_seconds:g} s: the call was stopped (its process ended)"
        return Invocation(text, True, "", "", False, True, elapsed_ms)
    if reply.kind == "quota":
        text = (
            f"stopped: the call wrote {reply.body.get('written', 0):,} bytes, more than its "
            f"{limits.write_bytes:,}-byte write quota (write_mib in its policy)"
        )
        return Invocation(text, True, "", "", False, False, elapsed_ms)
    if reply.kind == "cancelled":
        return Invocation("cancelled", True, "", "", False, False, elapsed_ms)
    return Invocation(f"the call failed: {reply.error or reply.kind}", True, "", "", False, False, elapsed_ms)
