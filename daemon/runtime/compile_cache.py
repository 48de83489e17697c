"""On-disk cache of compiled components, keyed by content hash and engine identity."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import wasmtime
from wasmtime.component import Component

log = logging.getLogger(__name__)


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
        component = Component(self._engine, wasm)
        self._store(entry, component)
        return component, False

    def ensure(self, wasm: bytes, content_hash: str) -> None:
        """Compile and store unless an entry exists; compile errors are left for `load` to report."""
        entry = self.entry_path(content_hash)
        if entry.exists():
            return
        with contextlib.suppress(wasmtime.WasmtimeError):
            self._store(entry, Component(self._engine, wasm))

    def _store(self, entry: Path, component: Component) -> None:
        # Write-then-rename so a concurrent reader never sees half an entry.
        try:
            fd, tmp = tempfile.mkstemp(dir=self._dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(component.serialize())
            os.replace(tmp, entry)
        except OSError as error:
            log.warning("could not write compile cache entry %s: %s", entry, error)
