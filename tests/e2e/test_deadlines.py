"""A call's deadline ends it wherever it is, cancelling frees its worker, loading never stalls serving.

The tools here block inside a WASI host call (`pollable.block` on a 60 s clock; a Python tool's
`time.sleep`), where no epoch check can reach them: only ending the worker process stops them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import REQUEST_CANCELLED

from tests.factories import ToolsDirFactory
from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.wat_tools import tool_wasm

SLACK_SECONDS = 2.0  # the worker is killed 0.2 s after the deadline; the rest is a loaded machine


@pytest.fixture
def nap_tools(make_tools_dir: ToolsDirFactory) -> Path:
    """A tiny echo, and `nap`, which sleeps."""
    return make_tools_dir(wasm={"echo": tool_wasm("echo"), "nap": tool_wasm("nap", behaviour="sleep")})


async def call(daemon: DaemonSession, name: str, value: str = "x", timeout: float = 30) -> dict[str, Any]:
    result: dict[str, Any] = await daemon.request(
        "tools/invoke", {"name": name, "arguments": {"value": value}}, timeout=timeout
    )
    return result


async def timed(daemon: DaemonSession, name: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = await call(daemon, name)
    return result, time.perf_counter() - started


@pytest.mark.parametrize("timeout", [1, 3])
async def test_a_call_blocked_in_a_host_call_ends_at_its_deadline(
    start_daemon: StartDaemon, nap_tools: Path, timeout: int
) -> None:
    daemon = await start_daemon("--tools-dir", nap_tools, "--tool-timeout", str(timeout))
    await call(daemon, "echo")  # a worker is up and the tools are loaded
    result, elapsed = await timed(daemon, "nap")
    assert result["isError"] is True
    assert result["timedOut"] is True
    assert f"timed out after {timeout} s" in result["content"][0]["text"]
    assert timeout <= elapsed < timeout + SLACK_SECONDS
    # The next call is served at once, by a fresh worker.
    after, elapsed = await timed(daemon, "echo")
    assert after["content"][0]["text"] == "x"
    assert elapsed < SLACK_SECONDS


async def test_a_python_tool_sleeping_is_stopped_at_its_deadline(
    start_daemon: StartDaemon, tmp_path: Path, test_tools: Path
) -> None:
    tools = tmp_path / "py"
    tools.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", tools / "hostile.wasm")
    daemon = await start_daemon("--tools-dir", tools, "--tool-timeout", "1")
    await daemon.request("tools/list")
    started = time.perf_counter()
    result = await daemon.request(
        "tools/invoke", {"name": "hostile", "arguments": {"action": "sleep", "target": "6"}}
    )
    elapsed = time.perf_counter() - started
    assert (result["isError"], result["timedOut"]) == (True, True)
    assert elapsed < 1 + SLACK_SECONDS


async def test_cancelled_calls_free_their_workers_at_once(start_daemon: StartDaemon, nap_tools: Path) -> None:
    daemon = await start_daemon("--tools-dir", nap_tools, "--tool-timeout", "60")
    await call(daemon, "echo")
    # As many blocked calls as there are workers for calls: every worker is taken.
    nap = {"name": "nap", "arguments": {"value": "x"}}
    sleepers = [daemon.request_future("tools/invoke", nap) for _ in range(8)]
    await asyncio.sleep(1.0)
    workers_busy = len(daemon.worker_pids())
    for request_id, _ in sleepers:
        daemon.cancel(request_id)
    for _, future in sleepers:
        with pytest.raises(RpcError) as cancelled:
            await asyncio.wait_for(future, 10)
        assert cancelled.value.code == REQUEST_CANCELLED
    result, elapsed = await timed(daemon, "echo")
    assert result["content"][0]["text"] == "x"
    assert elapsed < SLACK_SECONDS  # not the 60 s the sleepers had left
    assert workers_busy >= 8
    # The killed workers are gone, not left running their sleeps.
    await asyncio.sleep(0.5)
    assert len(daemon.worker_pids()) < workers_busy


async def test_a_describe_that_blocks_holds_up_neither_listing_nor_calls(
    start_daemon: StartDaemon, nap_tools: Path
) -> None:
    (nap_tools / "stuck.wasm").write_bytes(tool_wasm("stuck", behaviour="sleep_describe"))
    daemon = await start_daemon("--tools-dir", nap_tools)
    started = time.perf_counter()
    listing = await daemon.request("tools/list")
    elapsed = time.perf_counter() - started
    assert sorted(tool["name"] for tool in listing["tools"]) == ["echo", "nap"]
    failure = {Path(f["path"]).name: f["error"] for f in listing["failed"]}["stuck.wasm"]
    assert "describe() did not return within 2 s" in failure
    assert elapsed < 2 + 10  # the describe deadline, plus starting and loading on a loaded machine

    # A hot reload of another blocking tool does not hold up calls meanwhile.
    seen = len(daemon.notifications)
    (nap_tools / "stuck2.wasm").write_bytes(tool_wasm("stuck2", behaviour="sleep_describe"))
    await asyncio.sleep(1.2)  # past the watcher's debounce: the describe is now blocked
    result, elapsed = await timed(daemon, "echo")
    assert result["content"][0]["text"] == "x"
    assert elapsed < 1.0
    change = await daemon.wait_for_notification("tools/didChange", after=seen)
    assert "stuck2.wasm" in str(change["params"]["failed"])


async def test_a_killed_daemon_takes_its_workers_with_it(start_daemon: StartDaemon, nap_tools: Path) -> None:
    daemon = await start_daemon("--tools-dir", nap_tools, "--tool-timeout", "60")
    await call(daemon, "echo")
    daemon.request_future("tools/invoke", {"name": "nap", "arguments": {"value": "x"}})
    await asyncio.sleep(1.0)
    workers = daemon.worker_pids()
    assert workers
    daemon.process.kill()
    await asyncio.sleep(1.0)
    assert [pid for pid in workers if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
    finally:
        os.sched_yield()
