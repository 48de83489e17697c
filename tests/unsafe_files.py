"""What another user of the machine could leave where the daemon looks: files of theirs, a
compile cache signed with their key. Tests run as root, which may give a file to any uid."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from llama_agent.runtime.wasm.host import WasmHost

from tests.wat_tools import tool_wasm

OTHER_UID = 12345  # no user of the machine: a file given to it stands for another user's
FORGED_ECHO_ANSWER = "echo 6.6.6"


def give_to_another_user(*paths: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    for path in paths:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)


def give_to_another_group(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to a group it is not in")
    os.chown(path, os.geteuid(), OTHER_UID)


def make_device(path: Path) -> None:
    """A device node like /dev/zero's, which never ends when read."""
    if os.geteuid() != 0:
        pytest.skip("only root can make a device node")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))


def echo_wasm() -> bytes:
    return tool_wasm("echo")


def forged_cache(directory: Path) -> None:
    """A compile cache in `directory` whose own key signed, as the entry of `echo_wasm()`, other
    code (answering FORGED_ECHO_ANSWER): what another user who made the cache directory first
    could leave there."""
    forger = WasmHost(directory)
    forged = tool_wasm("echo", version="6.6.6", behaviour="version")
    forger.load_bytes(forged, Path("echo.wasm"), content_hash=hashlib.sha256(echo_wasm()).hexdigest())
    forger.close()


def tree(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every name below `directory`, with its inode, size and mtime: what a write would change."""
    return {
        str(path.relative_to(directory)): (info.st_ino, info.st_size, info.st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        for info in [path.lstat()]
    }
