"""A daemon killed or stopped while write_file runs never leaves a file empty or half written."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.consent import ALLOW_ONCE, answer_writes
from tests.rpc import DaemonSession, StartDaemon

OLD = "old line\n" * 100_000  # 900 KB
NEW = "new line\n" * 500_000  # 4.5 MB: long enough to be caught in the middle


@pytest.fixture
def tools(tmp_path: Path, bundled_tools: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(bundled_tools / "write_file.wasm", directory / "write_file.wasm")
    (directory / "write_file.policy.toml").write_text('workspace = "rw"\n')
    return directory  # started as a --trusted-tools-dir: its policy applies


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    directory = tmp_path / "workspace"
    directory.mkdir()
    return directory


async def writing(start_daemon: StartDaemon, tools: Path, workspace: Path) -> DaemonSession:
    (workspace / "target.txt").write_text(OLD)
    daemon = await start_daemon("--trusted-tools-dir", tools, "--workspace", workspace)
    answer_writes(daemon, ALLOW_ONCE)  # the person allows the write
    listed = await daemon.request("tools/list")
    assert listed["tools"][0]["grants"]["dirs"][0]["mode"] == "rw"
    daemon.request_future(
        "tools/invoke", {"name": "write_file", "arguments": {"path": "target.txt", "content": NEW}}
    )
    return daemon


def outcome(workspace: Path) -> str:
    content = (workspace / "target.txt").read_text()
    assert content in (OLD, NEW), f"a fragment of {len(content):,} characters was left"
    return "new" if content == NEW else "old"


async def kill_at_first_change(daemon: DaemonSession, workspace: Path) -> str:
    """SIGKILL the daemon the moment the write shows on disk: a new file, or the target changing."""
    target = workspace / "target.txt"
    size = target.stat().st_size
    for _ in range(20_000):  # about 20 s
        names = {p.name for p in workspace.iterdir()}
        if names != {"target.txt"} or target.stat().st_size != size:
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError("the write never started")
    daemon.process.kill()
    await daemon.wait_exit()
    return outcome(workspace)


async def test_kill_9_the_moment_the_write_touches_the_disk(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    """Truncate-then-write fails this at once (an empty file); a staged write and rename passes."""
    for _ in range(3):
        daemon = await writing(start_daemon, tools, workspace)
        assert await kill_at_first_change(daemon, workspace) in ("old", "new")
        for staging in workspace.glob(".target.txt.*.partial"):  # SIGKILL leaves it; nothing else does
            staging.unlink()


async def test_sigterm_lets_a_running_write_finish_answer_and_exit_cleanly(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    (workspace / "target.txt").write_text(OLD)
    daemon = await start_daemon("--trusted-tools-dir", tools, "--workspace", workspace)
    answer_writes(daemon, ALLOW_ONCE)
    await daemon.request("tools/list")
    _, write = daemon.request_future(
        "tools/invoke", {"name": "write_file", "arguments": {"path": "target.txt", "content": NEW}}
    )
    for _ in range(20_000):  # until the write is under way: its staging file exists
        if any(workspace.glob(".target.txt.*.partial")):
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError("the write never started")
    daemon.process.send_signal(signal.SIGTERM)
    answer = await asyncio.wait_for(write, 30)
    assert answer["isError"] is False
    assert answer["content"][0]["text"] == f"wrote {len(NEW)} bytes to target.txt"
    assert await daemon.wait_exit() == 0
    assert outcome(workspace) == "new"
    assert [p.name for p in workspace.iterdir()] == ["target.txt"]  # no staging file left behind


async def test_sigterm_with_nothing_running_exits_at_once(start_daemon: StartDaemon, tools: Path) -> None:
    daemon = await start_daemon("--trusted-tools-dir", tools)
    await daemon.request("tools/list")
    daemon.process.send_signal(signal.SIGTERM)
    assert await daemon.wait_exit(timeout=5) == 0


async def test_staging_files_that_killed_writes_left_are_removed_by_the_next_write(
    start_daemon: StartDaemon, tools: Path, workspace: Path
) -> None:
    """Kills do not pile up staging files: a write removes those of its kind in its directory that
    nobody has written to for over a minute. A running write's (fresh) one, and anything not named
    like one, are left alone."""
    old = time.time() - 3600
    stale = [workspace / ".target.txt.0123456789ab.partial", workspace / ".other.txt.abcdef012345.partial"]
    for path in stale:
        path.write_bytes(b"x" * 1_000_000)
        os.utime(path, (old, old))
    fresh = workspace / ".target.txt.fedcba987654.partial"  # a concurrent write's, written to 30 s ago
    fresh.write_bytes(b"being written")
    os.utime(fresh, (time.time() - 30, time.time() - 30))
    mine = [
        workspace / ".target.txt.partial",
        workspace / "notes.partial",
        workspace / "sub" / ".a.0123456789ab.partial",
    ]
    (workspace / "sub").mkdir()
    not_a_file = workspace / ".dir.0123456789ab.partial"
    not_a_file.mkdir()
    for path in [*mine, not_a_file]:
        if not path.exists():
            path.write_text("the person's own")
        os.utime(path, (old, old))
    daemon = await start_daemon("--trusted-tools-dir", tools, "--workspace", workspace)
    answer_writes(daemon, ALLOW_ONCE)
    answer = await daemon.request(
        "tools/invoke", {"name": "write_file", "arguments": {"path": "target.txt", "content": "new"}}
    )
    assert answer["content"][0]["text"] == "wrote 3 bytes to target.txt"
    assert not any(path.exists() for path in stale)
    assert fresh.read_bytes() == b"being written"
    assert all(path.read_text() == "the person's own" for path in mine)
    assert not_a_file.is_dir()
    assert (workspace / "target.txt").read_text() == "new"
