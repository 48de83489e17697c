"""On-disk cache of compiled components, keyed by content hash and engine identity."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import wasmtime
from wasmtime.component import Component

log = logging.getLogger(__name__)

# Compiling a component takes a core for seconds. Compiles run on their own threads at the
# lowest priority, so the calls being served keep their latency (measured in
# bench/hot_reload.py), while file watching and policy reloads stay at normal priority.
COMPILER_NICENESS = 19


def _lower_priority_of_this_thread() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPILER_NICENESS)
    except (AttributeError, OSError) as error:  # not Linux, or not permitted
        log.debug("cannot lower the compiler thread's priority: %s", error)


class CompileCache:
    """Maps wasm bytes to a compiled `Component`, compiling only on a miss.

    Entries are what `Component.serialize()` wrote; wasmtime checks on load that
    an entry matches this engine's version and settings, so a stale or corrupt
    entry is recompiled and overwritten rather than trusted.
    """

    def __init__(self, directory: Path, engine: wasmtime.Engine, engine_tag: str) -> None:
        self._dir = directory
        self._engine = engine
        self._engine_tag = engine_tag
        self._dir.mkdir(parents=True, exist_ok=True)
        self._compilers = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1,
            thread_name_prefix="compile",
            initializer=_lower_priority_of_this_thread,
        )

    def _compile(self, wasm: bytes) -> Component:
        return self._compilers.submit(Component, self._engine, wasm).result()

    def entry_path(self, content_hash: str) -> Path:
        key = hashlib.sha256(f"{self._engine_tag}:{content_hash}".encode()).hexdigest()
        return self._dir / f"{key[:40]}.cwasm"

    def load(self, wasm: bytes, content_hash: str) -> tuple[Component, bool]:
        """Return the compiled component and whether it came from the cache."""
        entry = self.entry_path(content_hash)
        if entry.exists():
            try:
                return Component.deserialize_file(self._engine, str(entry)), True
            except wasmtime.WasmtimeError as error:
                log.warning("discarding unusable cache entry %s: %s", entry, error)
        component = self._compile(wasm)
        self._store(entry, component)
        return component, False

    def ensure(self, wasm: bytes, content_hash: str) -> None:
        """Compile and store unless an entry exists; compile errors are left for `load` to report."""
        entry = self.entry_path(content_hash)
        if entry.exists():
            return
        with contextlib.suppress(wasmtime.WasmtimeError):
            self._store(entry, self._compile(wasm))

    def _store(self, entry: Path, component: Component) -> None:
        # Write-then-rename so a concurrent reader never sees half an entry.
        try:
            fd, tmp = tempfile.mkstemp(dir=self._dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(component.serialize())
            os.replace(tmp, entry)
        except OSError as error:
            log.warning("could not write compile cache entry %s: %s", entry, error)
