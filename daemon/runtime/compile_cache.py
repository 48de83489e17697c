"""On-disk cache of compiled components, keyed by content hash and engine identity.

Compiled code is loaded without further checks by wasmtime, so every entry is signed: an HMAC,
under a key kept with the cache (so every daemon using the cache verifies its entries), over which
tool the entry is for and the entry's digest. An entry that does not verify (rewritten, swapped
for another tool's entry, truncated) is compiled again and never run. No tool can be granted the
cache directory or anything in it (daemon/runtime/policy.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime.component import Component

log = logging.getLogger(__name__)

# Compiling a component takes a core for seconds. Compiles run on their own threads at the
# lowest priority, so the calls being served keep their latency (measured in
# bench/hot_reload.py), while file watching and policy reloads stay at normal priority.
COMPILER_NICENESS = 19
KEY_BYTES = 32
MAC_SUFFIX = ".mac"


@dataclass(frozen=True)
class Artifact:
    """A verified cache entry: where it is and the sha256 of its bytes, for workers to check."""

    path: Path
    sha256: str


def _lower_priority_of_this_thread() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPILER_NICENESS)
    except (AttributeError, OSError) as error:  # not Linux, or not permitted
        log.debug("cannot lower the compiler thread's priority: %s", error)


def signing_key(directory: Path) -> bytes:
    """The key in `directory/signing.key`, made on first use (mode 0600); a process-local key if
    the directory cannot be written (entries then verify only within this process)."""
    path = directory / "signing.key"
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except OSError:
        pass
    key = os.urandom(KEY_BYTES)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=directory, prefix=".signing.key.")
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        try:
            os.link(staged, path)  # atomic and exclusive: a racing daemon's key wins, we read it
        except FileExistsError:
            pass
        finally:
            os.unlink(staged)
        key = path.read_bytes()
    except OSError as error:
        log.warning(
            "cannot keep a compile-cache key in %s (%s): compiled tools will not be reused across runs",
            directory,
            error,
        )
    return key


class CompileCache:
    """Maps wasm bytes to a compiled `Component` and its verified entry, compiling only on a miss."""

    def __init__(self, directory: Path, engine: wasmtime.Engine, engine_tag: str, key: bytes) -> None:
        self._dir = directory
        self._engine = engine
        self._engine_tag = engine_tag
        self._key = key
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def _mac(self, content_hash: str, entry_sha256: str) -> str:
        message = f"{self._engine_tag}:{content_hash}:{entry_sha256}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def load(self, wasm: bytes, content_hash: str) -> tuple[Component, Artifact, bool]:
        """The compiled component, its cache entry, and whether it came from the cache."""
        entry = self.entry_path(content_hash)
        cached = self._load_verified(entry, content_hash)
        if cached is not None:
            return cached[0], cached[1], True
        component = self._compile(wasm)
        artifact = self._store(entry, content_hash, component)
        return component, artifact, False

    def ensure(self, wasm: bytes, content_hash: str) -> None:
        """Compile and store unless an entry exists (`load` verifies it); compile errors are left
        for `load` to report."""
        entry = self.entry_path(content_hash)
        if entry.exists() and (entry.parent / (entry.name + MAC_SUFFIX)).exists():
            return
        with contextlib.suppress(wasmtime.WasmtimeError, OSError):
            self._store(entry, content_hash, self._compile(wasm))

    def _load_verified(self, entry: Path, content_hash: str) -> tuple[Component, Artifact] | None:
        """The entry's component if its signature holds. It is mapped from the very descriptor
        whose content was checked, so a file renamed over the entry meanwhile is not loaded."""
        try:
            expected = (entry.parent / (entry.name + MAC_SUFFIX)).read_text().strip()
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
        except (OSError, UnicodeDecodeError):
            return None
        try:
            digest = file_sha256(fd)
            if not hmac.compare_digest(expected, self._mac(content_hash, digest)):
                log.warning("cache entry %s does not match its signature: compiling again", entry)
                return None
            component = Component.deserialize_file(self._engine, f"/proc/self/fd/{fd}")
        except wasmtime.WasmtimeError as error:
            log.warning("discarding unusable cache entry %s: %s", entry, error)
            return None
        except OSError:
            return None
        finally:
            os.close(fd)
        return component, Artifact(entry, digest)

    def _store(self, entry: Path, content_hash: str, component: Component) -> Artifact:
        """Write-then-rename, so a concurrent reader never sees half an entry."""
        data = component.serialize()
        digest = hashlib.sha256(data).hexdigest()
        write_atomically(entry, data)
        write_atomically(entry.parent / (entry.name + MAC_SUFFIX), self._mac(content_hash, digest).encode())
        return Artifact(entry, digest)


def write_atomically(path: Path, data: bytes | bytearray) -> None:
    fd, staged = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise


def file_sha256(fd: int) -> str:
    """The sha256 of everything in the open file `fd`, read from its start."""
    digest = hashlib.sha256()
    with os.fdopen(os.dup(fd), "rb") as file:
        file.seek(0)
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
