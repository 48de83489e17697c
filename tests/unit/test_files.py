"""Files in a watched directory are read only when they are small regular files; the files the
daemon keeps are replaced whole, and what it signs verifies under its key only."""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.storage.atomic import replacing, write_atomically
from llama_agent.runtime.storage.files import (
    MAX_COMPONENT_BYTES,
    RefusedFile,
    read_component,
    read_policy_text,
    read_regular_file,
)
from llama_agent.runtime.storage.signing import KEY_BYTES, sign, signed, signing_key


def finishes_quickly(call: object) -> None:
    """Run `call` on a thread; fail (rather than hang the suite) if it blocks."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "the read blocked"
    if outcome[0] is not None:
        raise outcome[0]


def test_a_small_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "tool.wasm"
    path.write_bytes(b"\0asm" + b"x" * 100)
    assert read_component(path) == b"\0asm" + b"x" * 100
    policy = tmp_path / "tool.policy.toml"
    policy.write_text("timeout_seconds = 1\n")
    assert read_policy_text(policy) == "timeout_seconds = 1\n"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "tool.policy.toml"
    os.mkfifo(fifo)
    with pytest.raises(RefusedFile, match="not a regular file"):
        finishes_quickly(lambda: read_policy_text(fifo))


def test_a_link_to_an_endless_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "tool.policy.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(RefusedFile, match="not a regular file"):
        finishes_quickly(lambda: read_policy_text(link))


def test_a_huge_sparse_file_is_refused_unread(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.wasm"
    with sparse.open("wb") as file:
        file.write(b"\0asm")
        file.truncate(1 << 30)  # 1 GiB, nearly all holes
    with pytest.raises(RefusedFile, match=f"the limit is {MAX_COMPONENT_BYTES:,}"):
        finishes_quickly(lambda: read_component(sparse))


def test_a_file_that_is_not_webassembly_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"MZ" + b"\0" * 1000)
    with pytest.raises(RefusedFile, match="not a valid WebAssembly component"):
        read_component(junk)
    empty = tmp_path / "empty.wasm"
    empty.write_bytes(b"")
    with pytest.raises(RefusedFile, match="not a valid WebAssembly component"):
        read_component(empty)


def test_the_size_limit_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"y" * 10)
    assert read_regular_file(path, 10) == b"y" * 10
    with pytest.raises(RefusedFile, match="is 10 bytes; the limit is 9"):
        read_regular_file(path, 9)


def test_a_directory_or_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(RefusedFile, match="not a regular file"):
        read_regular_file(tmp_path, 10)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", 10)


# -- replacing a file whole ---------------------------------------------------------------------------


def test_a_write_replaces_the_file_by_renaming_a_private_new_one(tmp_path: Path) -> None:
    target = tmp_path / "entry.cwasm"
    write_atomically(target, b"old")
    inode = target.stat().st_ino
    old_umask = os.umask(0o002)  # a lax umask must not make the file readable by others
    try:
        write_atomically(target, b"new")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != inode  # never truncated in place: a reader sees old or new
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["entry.cwasm"]


def test_a_write_that_fails_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    write_atomically(target, b"whole")
    with pytest.raises(ConnectionError), replacing(target) as out:
        out.write(b"half of a down")
        raise ConnectionError("the download broke off")
    assert target.read_bytes() == b"whole"
    assert [path.name for path in tmp_path.iterdir()] == ["blob"]


def test_the_content_is_on_disk_before_the_rename_and_the_rename_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a crash leaves: the new file whole, or the old one; never a renamed empty file."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        steps.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")

    def replace(*args: Any, **kwargs: Any) -> None:
        real_replace(*args, **kwargs)
        steps.append("rename")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(tmp_path / "grants.toml", b"approved")
    assert len(steps) == 3
    assert re.fullmatch(r"fsync \.grants\.toml\.[0-9a-f]{12}\.partial", steps[0]), steps
    assert steps[1:] == ["rename", f"fsync {tmp_path.name}"]


def test_a_write_into_a_checked_directory_stays_there_wherever_its_path_leads(tmp_path: Path) -> None:
    checked, elsewhere = tmp_path / "config", tmp_path / "elsewhere"
    checked.mkdir()
    elsewhere.mkdir()
    fd = os.open(checked, os.O_RDONLY | os.O_DIRECTORY)
    try:
        checked.rename(tmp_path / "moved")
        checked.symlink_to(elsewhere)  # the path now leads somewhere else
        write_atomically(checked / "grants.toml", b"approved", directory_fd=fd)
    finally:
        os.close(fd)
    assert (tmp_path / "moved" / "grants.toml").read_bytes() == b"approved"
    assert list(elsewhere.iterdir()) == []


# -- signing ------------------------------------------------------------------------------------------


def test_a_signature_holds_for_its_message_under_its_key_only() -> None:
    key, other_key = b"k" * KEY_BYTES, b"o" * KEY_BYTES
    signature = sign(key, b"engine:tool:digest")
    assert signed(key, b"engine:tool:digest", signature)
    assert signed(key, b"engine:tool:digest", signature.hex())  # as a .mac file holds it
    assert not signed(other_key, b"engine:tool:digest", signature)
    assert not signed(key, b"engine:tool:other digest", signature)
    assert not signed(key, b"engine:tool:digest", signature[:-1])
    assert not signed(key, b"engine:tool:digest", "é" + signature.hex()[1:])  # not hex at all


def test_a_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    key = signing_key(tmp_path / "cache")
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE((tmp_path / "cache" / "signing.key").stat().st_mode) == 0o600
    assert signing_key(tmp_path / "cache") == key


def test_a_directory_others_may_write_gets_a_key_kept_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with caplog.at_level(logging.WARNING):
        first, second = signing_key(shared), signing_key(shared)
    assert first != second and len(first) == KEY_BYTES  # this process's own, each time
    assert list(shared.iterdir()) == []
    assert "is writable by others (mode 777)" in caplog.text
