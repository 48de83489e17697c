"""Files in a watched directory are read only when they are small regular files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from llama_agent.runtime.storage.files import (
    MAX_COMPONENT_BYTES,
    RefusedFile,
    read_component,
    read_policy_text,
    read_regular_file,
)


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
