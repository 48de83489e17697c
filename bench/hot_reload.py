"""Hot reload: rename-to-announce latency, and invoke latency while a component compiles."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BENCH_CACHE_DIR, bundled, summary, with_custom_section
from tests.rpc import DaemonSession

RENAME_TRIALS = 20
IDLE_CALLS = 300


async def _daemon(tools: Path) -> DaemonSession:
    daemon = await DaemonSession.open(["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR)])
    await daemon.request("tools/list")
    return daemon


async def _echo_latency_ms(daemon: DaemonSession) -> float:
    started = time.perf_counter()
    await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "x"}})
    return (time.perf_counter() - started) * 1000


async def rename_to_announce(trials: int = RENAME_TRIALS) -> dict[str, Any]:
    """A cached component renamed into the watched directory → tools/didChange, in ms."""
    with tempfile.TemporaryDirectory() as scratch:
        tools, staging = Path(scratch) / "tools", Path(scratch) / "staging"
        tools.mkdir()
        staging.mkdir()
        shutil.copy2(bundled("echo"), tools / "echo.wasm")
        shutil.copy2(bundled("print"), staging / "print.wasm")
        # Make sure print is in the compile cache, as the target says "cached".
        (tools / "print.wasm").write_bytes((staging / "print.wasm").read_bytes())
        daemon = await _daemon(tools)
        (tools / "print.wasm").unlink()
        await daemon.wait_for_notification("tools/didChange")
        samples = []
        for _ in range(trials):
            seen = len(daemon.notifications)
            started = time.perf_counter()
            os.replace(staging / "print.wasm", tools / "print.wasm")
            await daemon.wait_for_notification("tools/didChange", after=seen)
            samples.append((time.perf_counter() - started) * 1000)
            await daemon.request("tools/invoke", {"name": "print", "arguments": {"message": "x"}})
            seen = len(daemon.notifications)
            os.replace(tools / "print.wasm", staging / "print.wasm")
            await daemon.wait_for_notification("tools/didChange", after=seen)
        await daemon.shutdown_and_exit()
    return summary(samples)


async def invoke_during_compile(idle_calls: int = IDLE_CALLS) -> dict[str, Any]:
    """Echo latency idle, then while an uncached Python component compiles."""
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch)
        shutil.copy2(bundled("echo"), tools / "echo.wasm")
        daemon = await _daemon(tools)
        for _ in range(20):  # warm up
            await _echo_latency_ms(daemon)
        idle = [await _echo_latency_ms(daemon) for _ in range(idle_calls)]

        uncached = with_custom_section(bundled("print").read_bytes(), uuid.uuid4().hex)
        seen = len(daemon.notifications)
        compile_started = time.perf_counter()
        (tools / ".print.partial").write_bytes(uncached)
        os.replace(tools / ".print.partial", tools / "print.wasm")
        announced = asyncio.ensure_future(daemon.wait_for_notification("tools/didChange", 600, after=seen))
        busy: list[float] = []
        while not announced.done():
            busy.append(await _echo_latency_ms(daemon))
        compile_seconds = time.perf_counter() - compile_started
        await daemon.shutdown_and_exit()
    idle_stats, busy_stats = summary(idle), summary(busy)
    return {
        "compile_seconds": compile_seconds,
        "idle": idle_stats,
        "during_compile": busy_stats,
        "p99_ratio": busy_stats["p99"] / idle_stats["p99"],
    }


async def main() -> None:
    print("rename → tools/didChange (ms):", await rename_to_announce())
    print("invoke during compile:", await invoke_during_compile())


if __name__ == "__main__":
    asyncio.run(main())
