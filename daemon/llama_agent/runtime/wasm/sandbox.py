"""Per-invocation resource limits and the WASI context a tool runs in."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import wasmtime

from llama_agent.runtime.tools.limits import Limits

# Bounds on what one call may instantiate, so that its host memory is bounded too: wasmtime caps
# each linear memory and each table separately. The bundled components need 1 memory, 2 tables of
# under 6,000 elements and up to 16 instances.
MAX_TABLE_ELEMENTS = 100_000  # per table; 8 bytes each
MAX_TABLES = 16
MAX_INSTANCES = 64


class OutputCapture:
    """Collects a WASI output stream up to a cap, remembering whether it overflowed."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            room = self._cap - self._size
            if len(data) > room:
                self.truncated = True
                data = data[: max(room, 0)]
            if data:
                self._chunks.append(bytes(data))
                self._size += len(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


@dataclass
class SandboxedStore:
    """A fresh store with no ambient authority: no env, args, stdin, files or sockets."""

    store: wasmtime.Store
    stdout: OutputCapture
    stderr: OutputCapture


def new_store(
    engine: wasmtime.Engine,
    limits: Limits,
    epoch_ticks: int,
    dirs: Sequence[tuple[str, str, bool]] = (),
    env: Sequence[tuple[str, str]] = (),
) -> SandboxedStore:
    """`dirs` are (host, guest, writable) preopens; `env` the variables the tool may see."""
    stdout = OutputCapture(limits.output_bytes)
    stderr = OutputCapture(limits.output_bytes)
    wasi = wasmtime.WasiConfig()  # inherits nothing unless told to
    wasi.stdout_custom = stdout.write
    wasi.stderr_custom = stderr.write
    if env:
        wasi.env = list(env)
    for host, guest, writable in dirs:
        wasi.preopen_dir(host, guest, fs_mutable=writable)
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    store.set_limits(
        memory_size=limits.memory_bytes,
        table_elements=MAX_TABLE_ELEMENTS,
        instances=MAX_INSTANCES,
        tables=MAX_TABLES,
        memories=limits.memories,
    )
    store.set_epoch_deadline(epoch_ticks)
    return SandboxedStore(store, stdout, stderr)
