"""Replacing a file whole: readers (this process, another daemon, the person) see the old file or
the new one, never a part, and a crash leaves one of them too.

The new content goes to a temporary file beside the target (same directory: same file system, so
the rename is atomic), created exclusively under a name nobody chose but this process, with the
file's mode set whatever the umask. It is flushed to disk (fsync), renamed over the target, and
the directory is flushed so the rename itself survives a crash. Anything that fails on the way
removes the temporary file and leaves the target as it was.

A caller that checked the directory first (private_files.py) passes the descriptor it checked:
the file is then created and renamed in that very directory, wherever its path leads meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600
STAGED_SUFFIX = ".partial"
_STAGED_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def write_atomically(
    path: Path, data: bytes | bytearray, *, directory_fd: int | None = None, mode: int = PRIVATE_MODE
) -> None:
    """Replace `path` with a file holding `data` (see the module's docstring). `directory_fd`:
    `path`'s directory, open, as the caller checked it. Raises OSError."""
    with replacing(path, directory_fd=directory_fd, mode=mode) as out:
        out.write(data)


@contextlib.contextmanager
def replacing(path: Path, *, directory_fd: int | None = None, mode: int = PRIVATE_MODE) -> Iterator[BinaryIO]:
    """A new file, open for writing, that replaces `path` once the block ends without an error
    (`write_atomically` for content written piece by piece, say a download)."""
    with _directory(path, directory_fd) as directory:
        staged = f".{path.name}.{secrets.token_hex(6)}{STAGED_SUFFIX}"
        fd = os.open(staged, _STAGED_FLAGS, mode, dir_fd=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # os.open's mode is masked by the umask
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staged, dir_fd=directory)
            raise
        os.fsync(directory)  # makes the rename itself durable


@contextlib.contextmanager
def _directory(path: Path, directory_fd: int | None) -> Iterator[int]:
    """`directory_fd` if given, else `path`'s directory opened for the time of the block."""
    if directory_fd is not None:
        yield directory_fd
        return
    fd = os.open(path.parent, _DIRECTORY_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)
