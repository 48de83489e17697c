"""Loads tool components and runs each call in a fresh, sandboxed instance.

Thread-safe: `load` and `invoke` are blocking calls meant for worker threads;
wasmtime releases the GIL while guest code runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime.component import Component, Linker

from daemon.runtime.compile_cache import CompileCache
from daemon.runtime.contracts import Contract, IncompatibleComponent, detect_contract
from daemon.runtime.files import RefusedFile, read_component
from daemon.runtime.metadata import ToolMetadata
from daemon.runtime.policy import Grants
from daemon.runtime.sandbox import Limits, SandboxedStore, new_store

log = logging.getLogger(__name__)

WASMTIME_VERSION = version("wasmtime")
EPOCH_INTERVAL_SECONDS = 0.02


class ToolLoadError(Exception):
    """A file that cannot be served as a tool; the message says why."""


@dataclass(frozen=True)
class LoadedTool:
    path: Path
    content_hash: str
    metadata: ToolMetadata
    contract: Contract
    component: Component
    from_cache: bool
    load_seconds: float


@dataclass(frozen=True)
class Invocation:
    text: str
    is_error: bool
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool
    duration_ms: float


class WasmHost:
    """One engine, one linker with WASI p2, one compile cache, an epoch ticker for timeouts."""

    def __init__(self, cache_dir: Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.cache_dir = cache_dir
        config = wasmtime.Config()
        config.epoch_interruption = True
        # One core compiles, the other keeps serving: measured in bench/hot_reload.py, a
        # parallel compile is ~15% faster but doubles invoke p99 while it runs.
        config.parallel_compilation = False
        self.engine = wasmtime.Engine(config)
        self._linker = Linker(self.engine)
        self._linker.add_wasip2()
        self._cache = CompileCache(
            cache_dir / "components", self.engine, engine_tag=f"wasmtime-{WASMTIME_VERSION}-epoch"
        )
        self._running = 0  # guest calls in progress
        self._activity = threading.Condition()
        self._closed = False
        self._ticker = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        with self._activity:
            self._closed = True
            self._activity.notify_all()

    def _tick(self) -> None:
        """Advance the epoch, which enforces timeouts, but only while guest code runs.

        A thread waking every few milliseconds needs the GIL each time; while the model
        generates that costs it most of its speed (measured: 3x slower agent runs).
        """
        with self._activity:
            while not self._closed:
                if self._running == 0:
                    self._activity.wait()
                    continue
                self._activity.wait(EPOCH_INTERVAL_SECONDS)
                self.engine.increment_epoch()

    @contextmanager
    def _guest_running(self) -> Iterator[None]:
        with self._activity:
            self._running += 1
            self._activity.notify_all()
        try:
            yield
        finally:
            with self._activity:
                self._running -= 1

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
            component, from_cache = self._cache.load(wasm, content_hash)
        except wasmtime.WasmtimeError as error:
            raise ToolLoadError(f"not a valid WebAssembly component: {_first_line(error)}") from error
        try:
            contract = detect_contract(component, self.engine)
        except IncompatibleComponent as error:
            raise ToolLoadError(str(error)) from error
        metadata = self._describe(component, contract, limits or self.limits)
        return LoadedTool(
            path=path,
            content_hash=content_hash,
            metadata=metadata,
            contract=contract,
            component=component,
            from_cache=from_cache,
            load_seconds=time.perf_counter() - started,
        )

    def _describe(self, component: Component, contract: Contract, limits: Limits) -> ToolMetadata:
        sandbox = self._new_store(Grants(limits=limits))
        try:
            with self._guest_running():
                instance = self._linker.instantiate(sandbox.store, component)
                metadata = contract.describe(sandbox.store, instance)
        except (wasmtime.WasmtimeError, IncompatibleComponent) as error:
            raise ToolLoadError(_failure_text("reading metadata failed", error, sandbox)) from error
        try:
            metadata.check()
        except ValueError as error:
            raise ToolLoadError(str(error)) from error
        return metadata

    # -- invoking -----------------------------------------------------------------------

    def invoke(self, tool: LoadedTool, arguments: dict[str, Any], grants: Grants | None = None) -> Invocation:
        """Run one call in a fresh instance with `grants` (default: the host's limits, nothing else).

        Arguments must already be validated and coerced.
        """
        grants = grants or self.default_grants
        limits = grants.limits
        started = time.perf_counter()
        moved = [grant.host for grant in grants.dirs if not grant.still_granted()]
        if moved:
            return _refused(
                f"cannot run: the granted directory {moved[0]} is no longer the directory that was "
                "granted (it was removed or replaced, or a symlink now stands in its path)",
                started,
            )
        try:
            sandbox = self._new_store(grants)
        except wasmtime.WasmtimeError as error:  # e.g. a granted directory was removed since
            return _refused(f"cannot set up the sandbox: {_first_line(error)}", started)
        timed_out = False
        try:
            with self._guest_running():
                instance = self._linker.instantiate(sandbox.store, tool.component)
                outcome = tool.contract.invoke(sandbox.store, instance, tool.metadata, arguments)
            text, is_error = outcome.text, outcome.is_error
        except wasmtime.WasmtimeError as error:
            elapsed = time.perf_counter() - started
            timed_out = _is_interrupt(error) and elapsed >= limits.timeout_seconds * 0.9
            summary = f"timed out after {limits.timeout_seconds:g} s" if timed_out else "tool trapped"
            text, is_error = _failure_text(summary, error, sandbox), True
        text, truncated = _cap_utf8(text, limits.output_bytes)  # the returned text obeys the cap too
        return Invocation(
            text=text,
            is_error=is_error,
            stdout=sandbox.stdout.text(),
            stderr=sandbox.stderr.text(),
            truncated=truncated or sandbox.stdout.truncated or sandbox.stderr.truncated,
            timed_out=timed_out,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    @property
    def default_grants(self) -> Grants:
        return Grants(limits=self.limits)

    def _new_store(self, grants: Grants | None = None) -> SandboxedStore:
        grants = grants or self.default_grants
        ticks = max(1, math.ceil(grants.limits.timeout_seconds / EPOCH_INTERVAL_SECONDS))
        return new_store(
            self.engine,
            grants.limits,
            ticks,
            dirs=[(str(d.host), d.guest, d.mode == "rw") for d in grants.dirs],
            env=[(name, os.environ[name]) for name in grants.env if name in os.environ],
        )


def _cap_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` of UTF-8 (never inside a character), and whether it was cut."""
    if len(text) * 4 <= max_bytes:  # no need to encode: it cannot be over
        return text, False
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True


def _refused(reason: str, started: float) -> Invocation:
    return Invocation(reason, True, "", "", False, False, (time.perf_counter() - started) * 1000)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _cause(error: BaseException) -> str:
    """The root cause of a wasmtime error, without the wasm backtrace."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1 :]
        if after:
            return after[-1]
    return lines[0] if lines else type(error).__name__


def _is_interrupt(error: BaseException) -> bool:
    return "interrupt" in _cause(error)


def _failure_text(summary: str, error: BaseException, sandbox: SandboxedStore) -> str:
    text = f"{summary}: {_cause(error)}"
    stderr = sandbox.stderr.text().strip()
    return f"{text}\n{stderr}" if stderr else text
