"""Reading files that anyone may have dropped into a watched directory, without trusting them.

A name ending in `.wasm` or `.policy.toml` may be a FIFO (opening it would block for ever), a link
to `/dev/zero` (reading it would never end) or a sparse file of gigabytes. Only regular files
under a size limit are read, through one descriptor, so the file checked is the file read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

WASM_MAGIC = b"\0asm"
# The largest tool component read: the bundled Python tools are about 18 MB each.
MAX_COMPONENT_BYTES = 128 * 1024 * 1024
MAX_POLICY_BYTES = 64 * 1024


class RefusedFile(OSError):
    """A file that is not read: not a regular file, or too big. The message says which."""


def read_regular_file(path: Path, max_bytes: int, magic: bytes = b"") -> bytes:
    """The whole of `path`, which must be a regular file of at most `max_bytes` starting with `magic`.

    Raises RefusedFile for anything else, and OSError when the file cannot be opened or read.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise RefusedFile(f"{path} is {info.st_size:,} bytes; the limit is {max_bytes:,}")
        if magic and os.pread(fd, len(magic), 0) != magic:
            raise RefusedFile(f"not a valid WebAssembly component: {path} does not start with \\0asm")
        data = _read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew after the check
        raise RefusedFile(f"{path} grew past the limit of {max_bytes:,} bytes while being read")
    return data


def read_component(path: Path) -> bytes:
    return read_regular_file(path, MAX_COMPONENT_BYTES, WASM_MAGIC)


def read_policy_text(path: Path) -> str:
    return read_regular_file(path, MAX_POLICY_BYTES).decode("utf-8")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
