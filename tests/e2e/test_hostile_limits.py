"""Limits that are limits: what a call returns, writes and allocates, measured on the real daemon.

Guest code runs in worker processes; the daemon only ever receives capped results. The memory
ceiling stated in docs/security.md is checked here through a suite of hostile calls.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.consent import ALLOW_ONCE, answer_writes
from tests.rpc import DaemonSession, StartDaemon, process_rss_bytes
from tests.wat_tools import tool_wasm

MIB = 1024 * 1024
# The ceilings of docs/security.md ("Memory"): what the daemon may grow by through hostile calls
# (it holds no guest memory), and what any one worker may hold.
DAEMON_GROWTH_CEILING = 64 * MIB
WORKER_CEILING = 1024 * MIB


@pytest.fixture
def tools(tmp_path: Path, test_tools: Path) -> Path:
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    return directory


async def hostile(daemon: DaemonSession, action: str, target: str = "") -> dict[str, Any]:
    result: dict[str, Any] = await daemon.request(
        "tools/invoke", {"name": "hostile", "arguments": {"action": action, "target": target}}, timeout=60
    )
    return result


def text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def test_a_huge_return_value_is_capped_before_it_reaches_the_daemon(
    start_daemon: StartDaemon, tools: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools)
    await hostile(daemon, "return", "10")
    before = daemon.rss_bytes()
    result = await hostile(daemon, "return", str(100_000_000))
    assert result["truncated"] is True
    assert text(result) == "x" * MIB  # the default output cap, 1 MiB
    assert daemon.rss_bytes() - before < 32 * MIB


async def test_writes_past_the_quota_are_stopped(
    start_daemon: StartDaemon, tools: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    policy = f'write_mib = 4\n[[dirs]]\nhost = "{data}"\nguest = "/data"\nmode = "rw"\n'
    (tools / "hostile.policy.toml").write_text(policy)
    daemon = await start_daemon("--trusted-tools-dir", tools)
    answer_writes(daemon, ALLOW_ONCE)  # the person allows each call
    small = await hostile(daemon, "fill", str(3 * MIB))
    assert text(small) == f"wrote {3 * MIB} bytes"
    for leftover in data.iterdir():
        leftover.unlink()
    result = await hostile(daemon, "fill", str(200 * MIB))
    assert result["isError"] is True
    assert "write quota" in text(result)
    written = sum(path.stat().st_size for path in data.iterdir())
    # Stopped within a couple of milliseconds of passing the quota: far below the 200 MiB asked.
    assert 4 * MIB <= written < 40 * MIB, written
    again = await hostile(daemon, "fill", str(MIB))  # the next call has a quota of its own
    assert text(again) == f"wrote {MIB} bytes"


async def test_no_single_file_grows_past_the_quota(
    start_daemon: StartDaemon, tools: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    policy = f'write_mib = 0.5\n[[dirs]]\nhost = "{data}"\nguest = "/data"\nmode = "rw"\n'
    (tools / "hostile.policy.toml").write_text(policy)
    daemon = await start_daemon("--trusted-tools-dir", tools)
    answer_writes(daemon, ALLOW_ONCE)
    result = await hostile(daemon, "fill", str(MIB))  # one 1 MiB file
    assert text(result).startswith("denied:"), text(result)  # the write failed (EFBIG) ...
    assert (data / "fill-0.bin").stat().st_size <= MIB // 2
    assert text(await hostile(daemon, "fill", str(MIB // 4))) == f"wrote {MIB // 4} bytes"  # ... no kill


async def test_memory_stays_under_the_ceiling_through_the_hostile_suite(
    start_daemon: StartDaemon, tools: Path
) -> None:
    for behaviour in ("grow", "grow_table", "two_memories", "trap", "loop", "recurse", "sleep"):
        (tools / f"{behaviour}.wasm").write_bytes(tool_wasm(behaviour.replace("_", "-"), behaviour=behaviour))
    daemon = await start_daemon("--tools-dir", tools, "--tool-timeout", "1")
    await daemon.request("tools/list")
    baseline = daemon.rss_bytes()
    peaks = {"daemon": 0, "worker": 0}
    sampling = asyncio.create_task(_sample(daemon, peaks))

    async def wat(name: str) -> dict[str, Any]:
        params = {"name": name, "arguments": {"value": "x"}}
        result: dict[str, Any] = await daemon.request("tools/invoke", params, timeout=60)
        return result

    for _ in range(3):
        await asyncio.gather(
            *(wat(name) for name in ("grow", "grow-table", "trap", "loop", "recurse", "sleep"))
        )
        await hostile(daemon, "allocate", str(200 * MIB))
        await hostile(daemon, "return", str(100_000_000))
        await hostile(daemon, "print", str(50 * MIB))
    await asyncio.gather(*(wat("trap") for _ in range(200)))
    sampling.cancel()
    assert peaks["daemon"] - baseline < DAEMON_GROWTH_CEILING, peaks
    assert peaks["worker"] < WORKER_CEILING, peaks
    assert (await wat("trap"))["isError"] is True  # still serving


async def _sample(daemon: DaemonSession, peaks: dict[str, int]) -> None:
    while True:
        peaks["daemon"] = max(peaks["daemon"], daemon.rss_bytes())
        for pid in daemon.worker_pids():
            peaks["worker"] = max(peaks["worker"], process_rss_bytes(pid))
        await asyncio.sleep(0.02)
