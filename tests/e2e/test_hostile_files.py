"""Files dropped into a watched directory cannot hang, bloat or crowd out the daemon."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.rpc import DaemonSession, StartDaemon
from tests.wat_tools import tool_wasm


async def failures(daemon: DaemonSession) -> dict[str, str]:
    listing: dict[str, Any] = await daemon.request("tools/list", timeout=60)
    return {Path(failure["path"]).name: failure["error"] for failure in listing["failed"]}


async def test_fifos_devices_and_huge_files_are_refused_and_serving_goes_on(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    os.mkfifo(tools_dir / "echo.policy.toml")  # opening it for reading would wait for ever
    (tools_dir / "print.policy.toml").symlink_to("/dev/zero")  # reading it would never end
    with (tools_dir / "huge.wasm").open("wb") as sparse:  # 1 GiB that costs no disk
        sparse.write(b"\0asm\x0d\x00\x01\x00")
        sparse.truncate(1 << 30)
    (tools_dir / "fake.wasm").write_bytes(b"#!/bin/sh\necho not wasm\n" * 100)

    daemon = await start_daemon("--tools-dir", tools_dir)
    failed = await failures(daemon)
    assert "not a regular file" in failed["echo.policy.toml"]
    assert "not a regular file" in failed["print.policy.toml"]
    assert "the limit is" in failed["huge.wasm"]
    assert "not a valid WebAssembly component" in failed["fake.wasm"]
    assert await daemon.echoes()
    assert daemon.rss_bytes() < 1024 * 1024 * 1024


async def test_metadata_too_big_for_a_prompt_is_refused(start_daemon: StartDaemon, tools_dir: Path) -> None:
    (tools_dir / "wordy.wasm").write_bytes(tool_wasm("wordy", description="blah " * 9000))
    many = tuple((f"p{i}", "string", False) for i in range(40))
    (tools_dir / "many.wasm").write_bytes(tool_wasm("many", params=many))
    daemon = await start_daemon("--tools-dir", tools_dir)
    failed = await failures(daemon)
    assert "its description has 45,000 characters; the limit is 1,000" in failed["wordy.wasm"]
    assert "declares 40 parameters; the limit is 32" in failed["many.wasm"]
    listed = await daemon.request("tools/list")
    assert {tool["name"] for tool in listed["tools"]} == {"echo", "print"}


async def test_wasm_entries_that_are_no_regular_files_are_reported_without_blocking(
    start_daemon: StartDaemon, tools_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `*.wasm` that is not a regular file is named under `failed` with what it is, and none is
    opened: a FIFO would block start-up, a device may do anything."""
    os.mkfifo(tools_dir / "fifo.wasm")
    (tools_dir / "zero.wasm").symlink_to("/dev/zero")
    (tools_dir / "dangling.wasm").symlink_to(tools_dir / "nowhere.wasm")
    (tools_dir / "loop.wasm").symlink_to("loop.wasm")
    (tools_dir / "folder.wasm").mkdir()
    monkeypatch.chdir(tools_dir)  # a socket's path is limited to 108 bytes: bind it by a short one
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind("socket.wasm")

        started = time.monotonic()
        daemon = await start_daemon("--tools-dir", tools_dir)
        failed = await failures(daemon)
        assert time.monotonic() - started < 30  # opening the FIFO would have blocked for ever
    assert "is not a regular file but a FIFO (named pipe)" in failed["fifo.wasm"]
    device = "is not a regular file but a character device (through the symbolic link to /dev/zero)"
    assert device in failed["zero.wasm"]
    nowhere = tools_dir / "nowhere.wasm"
    assert f"is a symbolic link to {nowhere}, which does not exist" in failed["dangling.wasm"]
    assert "Too many levels of symbolic links" in failed["loop.wasm"]
    assert "is not a regular file but a directory" in failed["folder.wasm"]
    assert "is not a regular file but a socket" in failed["socket.wasm"]
    assert await daemon.echoes()
