"""Runs guest code: one call in a fresh store and instance, within a call's limits.

This is the part of the tool host that executes untrusted code. The daemon runs it in worker
processes (worker.py) so that a call can be ended wherever it is, even blocked
inside a WASI host call where no epoch check can reach it; benchmarks run it in-process.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime.component import Component, Linker

from llama_agent.common.text import visible
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ToolMetadata
from llama_agent.runtime.wasm.contracts import Contract, IncompatibleComponent
from llama_agent.runtime.wasm.sandbox import SandboxedStore, new_store

EPOCH_INTERVAL_SECONDS = 0.02


def new_engine() -> wasmtime.Engine:
    """The engine every component is compiled for and run on; its settings are part of the cache key."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    # One core compiles, the other keeps serving: measured in bench/hot_reload.py, a
    # parallel compile is ~15% faster but doubles invoke p99 while it runs.
    config.parallel_compilation = False
    return wasmtime.Engine(config)


ENGINE_TAG_SUFFIX = "epoch"  # names the engine settings above in compile-cache keys


@dataclass(frozen=True)
class Sandbox:
    """What one call may touch: preopened (host, guest, writable) directories and environment."""

    limits: Limits
    dirs: tuple[tuple[str, str, bool], ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @property
    def writable(self) -> bool:
        """Whether any granted directory may be written."""
        return any(writable for _, _, writable in self.dirs)


@dataclass(frozen=True)
class Invocation:
    text: str
    is_error: bool
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool
    duration_ms: float
    # How the worker process that ran the call was confined by the operating system (confine.py:
    # "landlock+seccomp", "seccomp", "none"); empty for a call that ran in no worker.
    confinement: str = ""
    # What the sandbox measured of the call (0: not measured, as for a call that ran in no worker):
    # its worker's peak resident memory during the call, and the bytes it wrote to granted files.
    peak_memory_bytes: int = 0
    bytes_written: int = 0

    @classmethod
    def failure(cls, text: str, duration_ms: float = 0.0, timed_out: bool = False) -> Invocation:
        """A call that returned nothing of the tool's: `text` says why (refused, stopped, failed)."""
        return cls(text, True, "", "", False, timed_out, duration_ms)


@dataclass
class ReadyInstance:
    """A fresh store and instance made ahead of a call (in a worker's idle time), for one component
    under one sandbox; used by at most one call."""

    component: Component
    spec: Sandbox
    sandbox: SandboxedStore
    instance: Any  # wasmtime.component.Instance

    def suits(self, component: Component, spec: Sandbox) -> bool:
        return self.component is component and self.spec == spec

    def close(self) -> None:
        """Free the store now: its memories, and the files the guest holds open (preopened
        directories and whatever it opened), whatever else still refers to it."""
        self.sandbox.store.close()


@dataclass(frozen=True)
class _Call:
    component: Component
    contract: Contract
    arguments: dict[str, object]
    limits: Limits
    started: float  # time.perf_counter() when the call was asked for


class DescribeFailed(Exception):
    """`describe()` trapped, timed out or returned metadata that cannot be served."""


class Executor:
    """One engine and one WASI linker; an epoch ticker that runs only while guest code does.

    A thread waking every few milliseconds needs the GIL each time; while the model generates
    in the same process that costs it most of its speed (measured: 3x slower agent runs).
    """

    def __init__(self, engine: wasmtime.Engine | None = None) -> None:
        self.engine = engine or new_engine()
        self._linker = Linker(self.engine)
        self._linker.add_wasip2()
        self._running = 0
        self._activity = threading.Condition()
        self._closed = False
        self._ticker = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        with self._activity:
            self._closed = True
            self._activity.notify_all()

    def _tick(self) -> None:
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

    def describe(self, component: Component, contract: Contract, limits: Limits) -> ToolMetadata:
        sandbox = self._new_store(Sandbox(limits))
        try:
            with self._guest_running():
                instance = self._linker.instantiate(sandbox.store, component)
                metadata = contract.describe(sandbox.store, instance)
        except (wasmtime.WasmtimeError, IncompatibleComponent) as error:
            release_frames(error)
            raise DescribeFailed(failure_text("reading metadata failed", error, sandbox)) from None
        finally:
            sandbox.store.close()
        try:
            metadata.check()
        except ValueError as error:
            raise DescribeFailed(str(error)) from error
        return metadata

    def prepare(self, component: Component, spec: Sandbox) -> ReadyInstance | None:
        """A fresh store and instance for a later call of `component` under `spec`; None if it
        cannot be made now (the call then makes its own, and reports why)."""
        try:
            sandbox = self._new_store(spec)
        except wasmtime.WasmtimeError as error:
            release_frames(error)
            return None
        try:
            with self._guest_running():
                instance = self._linker.instantiate(sandbox.store, component)
        except wasmtime.WasmtimeError as error:  # its start trapped or ran out of time
            release_frames(error)
            sandbox.store.close()
            return None
        return ReadyInstance(component, spec, sandbox, instance)

    def invoke(
        self,
        component: Component,
        contract: Contract,
        arguments: dict[str, object],
        sandbox_spec: Sandbox,
        ready: ReadyInstance | None = None,
    ) -> Invocation:
        """Run one call in a fresh store and instance: `ready`'s if it suits, else one made now.

        A store made here is closed before this returns; `ready`'s is the caller's to close (a
        worker does it after answering, off the caller's time)."""
        started = time.perf_counter()
        if ready is not None and ready.suits(component, sandbox_spec):
            ready.sandbox.store.set_epoch_deadline(_ticks(sandbox_spec.limits))  # the call's time starts now
            call = _Call(component, contract, arguments, sandbox_spec.limits, started)
            return self._call(call, ready.sandbox, ready.instance)
        try:
            sandbox = self._new_store(sandbox_spec)
        except wasmtime.WasmtimeError as error:  # e.g. a granted directory was removed since
            release_frames(error)
            return refused(f"cannot set up the sandbox: {first_line(error)}", started)
        try:
            return self._call(_Call(component, contract, arguments, sandbox_spec.limits, started), sandbox)
        finally:
            sandbox.store.close()

    def _call(self, call: _Call, sandbox: SandboxedStore, instance: Any = None) -> Invocation:
        """Make `call` in `instance` (made now in `sandbox` if None); however it ends, no exception
        is left holding the store."""
        component, contract, arguments, limits = call.component, call.contract, call.arguments, call.limits
        timed_out = False
        try:
            with self._guest_running():
                if instance is None:
                    instance = self._linker.instantiate(sandbox.store, component)
                result = contract.invoke(sandbox.store, instance, arguments)
            text, is_error = result.text, result.is_error
        except wasmtime.WasmtimeError as error:
            release_frames(error)
            timed_out = is_interrupt(error)  # only the epoch deadline interrupts
            summary = f"timed out after {limits.timeout_seconds:g} s" if timed_out else "tool trapped"
            text, is_error = failure_text(summary, error, sandbox), True
        except (TypeError, ValueError, OverflowError) as error:  # wasmtime could not lower an argument
            release_frames(error)
            text, is_error = f"cannot pass the arguments to the tool: {visible(first_line(error))}", True
        text, truncated = cap_utf8(text, limits.output_bytes)
        return Invocation(
            text=text,
            is_error=is_error,
            stdout=sandbox.stdout.text(),
            stderr=sandbox.stderr.text(),
            truncated=truncated or sandbox.stdout.truncated or sandbox.stderr.truncated,
            timed_out=timed_out,
            duration_ms=(time.perf_counter() - call.started) * 1000,
        )

    def _new_store(self, spec: Sandbox) -> SandboxedStore:
        return new_store(self.engine, spec.limits, _ticks(spec.limits), dirs=spec.dirs, env=spec.env)


def _ticks(limits: Limits) -> int:
    """The epoch deadline, in ticks from now, for a call of `limits.timeout_seconds`."""
    return max(1, math.ceil(limits.timeout_seconds / EPOCH_INTERVAL_SECONDS))


def cap_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """`text` cut to at most `max_bytes` of UTF-8 (never inside a character), and whether it was cut."""
    if len(text) * 4 <= max_bytes:  # no need to encode: it cannot be over
        return text, False
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True


def refused(reason: str, started: float) -> Invocation:
    return Invocation.failure(reason, (time.perf_counter() - started) * 1000)


def release_frames(error: BaseException) -> None:
    """Let go of the frames `error` and the exceptions chained to it keep alive.

    wasmtime-py raises its errors from a frame that holds them in a local variable (`error = ...;
    raise error`): the exception, its traceback and that frame form a reference cycle, which keeps
    every frame on the way alive, with the call's store in their locals, until the garbage
    collector happens to run. Called once the error has been read, it frees them at once.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current.__traceback__ = None
        pending.extend(chained for chained in (current.__cause__, current.__context__) if chained)


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _cause(error: BaseException) -> str:
    """The root cause of a wasmtime error, without the wasm backtrace."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1 :]
        if after:
            return after[-1]
    return lines[0] if lines else type(error).__name__


def is_interrupt(error: BaseException) -> bool:
    return "interrupt" in _cause(error)


def failure_text(summary: str, error: BaseException, sandbox: SandboxedStore) -> str:
    text = f"{summary}: {_cause(error)}"
    stderr = sandbox.stderr.text().strip()
    return f"{text}\n{stderr}" if stderr else text
