"""A compile cache someone else could have written, over stdio: its key could sign any code as any
tool, so the daemon neither runs nor writes anything in it, says what is wrong, and serves from a
private directory of its own."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from tests.rpc import DaemonSession, StartDaemon
from tests.unsafe_files import (
    FORGED_ECHO_ANSWER,
    OTHER_UID,
    echo_wasm,
    forged_cache,
    give_to_another_user,
    tree,
)

# Start-up compiles nothing before `initialize` is answered; 2 loaded cores answer within a second.
INITIALIZE_WITHIN_SECONDS = 20.0


def tools_with_echo(tmp_path: Path) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "echo.wasm").write_bytes(echo_wasm())
    return tools


async def echo(daemon: DaemonSession) -> str:
    result = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "hi"}})
    return str(result["content"][0]["text"])


async def logged(daemon: DaemonSession, words: bytes) -> bool:
    for _ in range(100):  # the log is on stderr, which wait_until does not follow
        if words in daemon.stderr:
            return True
        await asyncio.sleep(0.1)
    return False


async def started_in_time(start_daemon: StartDaemon, cache: Path, tools: Path) -> DaemonSession:
    daemon = await start_daemon("--cache-dir", cache, "--tools-dir", tools, initialize=False)
    began = time.monotonic()
    await asyncio.wait_for(daemon.initialize(), INITIALIZE_WITHIN_SECONDS)
    await daemon.request("tools/list", timeout=INITIALIZE_WITHIN_SECONDS)
    assert time.monotonic() - began < INITIALIZE_WITHIN_SECONDS
    return daemon


async def test_another_users_cache_with_a_forged_entry_for_echo_is_not_run(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    cache = tmp_path / "shared-cache"
    forged_cache(cache)
    tools = tools_with_echo(tmp_path)
    believer = await start_daemon("--cache-dir", cache, "--tools-dir", tools)
    assert await echo(believer) == FORGED_ECHO_ANSWER  # the control: believed, the forgery runs
    await believer.kill()

    give_to_another_user(cache, *cache.rglob("*"))  # as if made first by them, in a shared /tmp
    before = tree(cache)
    daemon = await started_in_time(start_daemon, cache, tools)
    assert await echo(daemon) == "hi"
    assert await logged(daemon, f"not using the compile cache in {cache}, nothing in it is trusted".encode())
    assert f"belongs to another user (uid {OTHER_UID})".encode() in daemon.stderr
    assert tree(cache) == before
    assert await daemon.shutdown_and_exit() == 0  # which removes its private cache


async def test_a_world_writable_cache_is_not_run_nor_written(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    forged_cache(cache)
    cache.chmod(0o777)
    before = tree(cache)
    daemon = await started_in_time(start_daemon, cache, tools_with_echo(tmp_path))
    assert await echo(daemon) == "hi"
    assert await logged(daemon, b"is writable by others (mode 777): chmod go-w")
    assert tree(cache) == before
    assert await daemon.shutdown_and_exit() == 0


async def test_a_fifo_for_a_key_does_not_hold_up_start_up(start_daemon: StartDaemon, tmp_path: Path) -> None:
    """Opened to be read, a FIFO waits for a writer: start-up would never answer `initialize`."""
    cache = tmp_path / "cache"
    (cache / "components").mkdir(parents=True)
    os.mkfifo(cache / "signing.key", 0o600)
    daemon = await started_in_time(start_daemon, cache, tools_with_echo(tmp_path))
    assert await echo(daemon) == "hi"
    assert await logged(daemon, b"signing.key is not a regular file but a FIFO")

    # The private directory it compiled into instead is its alone, and goes with it.
    assert await logged(daemon, b", for this process only")
    [private] = re.findall(rb"compiling tools into (\S+), for this process only", bytes(daemon.stderr))
    private_dir = Path(os.fsdecode(private))
    assert private_dir.stat().st_mode & 0o777 == 0o700
    assert any(private_dir.iterdir())  # echo's entry
    assert await daemon.shutdown_and_exit() == 0
    assert not private_dir.exists()
