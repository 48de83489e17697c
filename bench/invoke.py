"""Invoke round trip and throughput: the daemon over stdio, wasmtime-py in-process, an MCP peer
(through the MCP SDK's client, and through the same minimal client as the daemon)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.wasm.contracts import detect_contract
from llama_agent.runtime.wasm.executor import Executor, Sandbox
from llama_agent.runtime.wasm.host import WasmHost
from wasmtime.component import Component

from bench.common import BENCH_CACHE_DIR, bundled, summary
from bench.line_client import ServerProcess
from tests.rpc import DaemonSession, RpcError

CALLS = 1000
WARMUP = 50
ROUNDS = 10  # of CALLS / ROUNDS calls to each server in the interleaved comparison
VALUE = "Something to echo"


async def daemon_session(tools: Path, *extra: str, ready_instances: bool = True) -> DaemonSession:
    env = None if ready_instances else {**os.environ, "LLAMA_AGENT_READY_TOOLS": "0"}
    daemon = await DaemonSession.open(
        ["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR), "--lazy-model", *extra], env=env
    )
    await daemon.request("tools/list")
    return daemon


def echo_tools_dir(scratch: Path) -> Path:
    tools = scratch / "tools"
    tools.mkdir()
    shutil.copy2(bundled("echo"), tools / "echo.wasm")
    return tools


async def _timed(call: Any) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def daemon_round_trip(calls: int = CALLS, ready_instances: bool = True) -> list[float]:
    return (await daemon_round_trip_split(calls, ready_instances))[0]


async def daemon_round_trip_split(
    calls: int = CALLS, ready_instances: bool = True
) -> tuple[list[float], list[float]]:
    """Milliseconds per echo call, and of each the part outside the tool host: the call's round trip
    less its `durationMs` (the daemon's time from sending the job to a worker to its reply), i.e.
    stdio both ways, framing, pygls, validation and JSON."""
    params = {"name": "echo", "arguments": {"value": VALUE}}
    outside: list[float] = []

    async def call(daemon: DaemonSession) -> None:
        started = time.perf_counter()
        result = await daemon.request("tools/invoke", params)
        outside.append((time.perf_counter() - started) * 1000 - result["durationMs"])

    samples = await _sampled(call, calls, ready_instances)
    return samples, outside[-calls:]


async def protocol_round_trip(calls: int = CALLS) -> list[float]:
    """tools/invoke of a tool that is not there: framing, dispatch, validation and the error answer
    (with the warning it logs), no worker and no WebAssembly."""

    async def refused(daemon: DaemonSession) -> None:
        try:
            await daemon.request("tools/invoke", {"name": "no-such-tool", "arguments": {"value": VALUE}})
        except RpcError:
            return
        raise AssertionError("a tool that is not there was invoked")

    return await _sampled(refused, calls)


async def _sampled(
    call: Callable[[DaemonSession], Awaitable[Any]], calls: int, ready_instances: bool = True
) -> list[float]:
    """Milliseconds per `call` on a daemon serving echo, after WARMUP calls."""
    with tempfile.TemporaryDirectory() as scratch:
        daemon = await daemon_session(echo_tools_dir(Path(scratch)), ready_instances=ready_instances)
        for _ in range(WARMUP):
            await call(daemon)
        samples = [await _timed(call(daemon)) for _ in range(calls)]
        await daemon.shutdown_and_exit()
    return samples


def in_process_floor(calls: int = CALLS, ready: bool = False) -> list[float]:
    """The same component called in this process, no protocol, no worker process: instantiated per
    call (the floor of a call that makes its instance), or, with `ready`, on an instance made
    before the clock starts (the call alone)."""
    host = WasmHost(BENCH_CACHE_DIR)
    tool = host.load(bundled("echo"))
    executor = Executor(host.engine)
    component = Component.deserialize_file(host.engine, str(tool.artifact.path))
    sandbox = Sandbox(host.limits)

    def timed_call() -> float:
        instance = executor.prepare(component, sandbox) if ready else None
        started = time.perf_counter()
        executor.invoke(component, tool.contract, {"value": VALUE}, sandbox, instance)
        return (time.perf_counter() - started) * 1000

    for _ in range(WARMUP):
        timed_call()
    samples = [timed_call() for _ in range(calls)]
    executor.close()
    host.close()
    return samples


def in_process_ceiling(seconds: float = 5.0) -> float:
    """Echo calls per second with a fresh store and instance each, in-process, one process per core,
    no protocol and no daemon: what the machine can do at most with that guarantee."""
    host = WasmHost(BENCH_CACHE_DIR)
    artifact = str(host.load(bundled("echo")).artifact.path)
    host.close()
    processes = os.cpu_count() or 1
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        rates = pool.map(_calls_per_second, [artifact] * processes, [seconds] * processes)
        return sum(rates)


def _calls_per_second(artifact: str, seconds: float) -> float:
    executor = Executor()
    component = Component.deserialize_file(executor.engine, artifact)
    contract = detect_contract(component, executor.engine)
    sandbox = Sandbox(Limits())
    for _ in range(WARMUP):
        executor.invoke(component, contract, {"value": VALUE}, sandbox)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        executor.invoke(component, contract, {"value": VALUE}, sandbox)
        calls += 1
    executor.close()
    return calls / (time.perf_counter() - started)


async def mcp_peer_round_trip(calls: int = CALLS) -> list[float]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    server = StdioServerParameters(
        command=sys.executable, args=[str(Path(__file__).with_name("mcp_peer.py"))]
    )
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for _ in range(WARMUP):
            await session.call_tool("echo", {"value": VALUE})
        return [await _timed(session.call_tool("echo", {"value": VALUE})) for _ in range(calls)]


def _start_peer() -> ServerProcess:
    peer = ServerProcess([sys.executable, str(Path(__file__).with_name("mcp_peer.py"))], "lines")
    client_info = {"name": "bench", "version": "0"}
    peer.client.request(
        "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client_info}
    )
    peer.client.notify("notifications/initialized")
    return peer


def _start_daemon(tools: Path) -> ServerProcess:
    command = [str(Path(sys.executable).with_name("llama-agent")), "serve"]
    options = ["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR), "--lazy-model"]
    daemon = ServerProcess([*command, *options], "content-length")
    daemon.client.request("initialize", {"processId": os.getpid(), "capabilities": {}})
    daemon.client.notify("initialized", {})
    daemon.client.request("tools/list")
    return daemon


def line_client_round_trips(calls: int = CALLS, rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Milliseconds per echo call of the daemon (tools/invoke) and of the MCP peer (tools/call),
    both through `LineClient`, in rounds that alternate which goes first (A B, B A, ...), so that
    the machine's drift falls on both alike."""
    arguments = {"name": "echo", "arguments": {"value": VALUE}}
    with tempfile.TemporaryDirectory() as scratch:
        daemon, peer = _start_daemon(echo_tools_dir(Path(scratch))), _start_peer()
        try:

            def peer_call() -> None:
                if peer.client.request("tools/call", arguments).get("isError"):
                    raise AssertionError("the MCP peer's echo failed")

            servers = {
                "daemon": lambda: daemon.client.request("tools/invoke", arguments),
                "mcp_peer": peer_call,
            }
            samples: dict[str, list[float]] = {name: [] for name in servers}
            for call in servers.values():
                for _ in range(WARMUP):
                    call()
            for round_ in range(rounds):
                for name in list(servers)[:: 1 if round_ % 2 == 0 else -1]:
                    samples[name] += [_timed_sync(servers[name]) for _ in range(calls // rounds)]
        finally:
            with contextlib.suppress(OSError, ValueError, EOFError):
                daemon.client.request("shutdown")
                daemon.client.notify("exit")
            daemon.close()
            peer.close()
    return samples


def _timed_sync(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def throughput(in_flight: int, seconds: float = 5.0, ready_instances: bool = True) -> float:
    """Calls per second with `in_flight` requests outstanding at all times."""
    with tempfile.TemporaryDirectory() as scratch:
        daemon = await daemon_session(echo_tools_dir(Path(scratch)), ready_instances=ready_instances)
        params = {"name": "echo", "arguments": {"value": VALUE}}
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await daemon.request("tools/invoke", params)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
        await daemon.shutdown_and_exit()
    return done / elapsed


async def run() -> dict[str, Any]:
    daemon, outside = await daemon_round_trip_split()
    results: dict[str, Any] = {
        "daemon": summary(daemon),
        "daemon_protocol": summary(outside),
        "daemon_no_ready": summary(await daemon_round_trip(ready_instances=False)),
        "protocol_only": summary(await protocol_round_trip()),
        "in_process": summary(in_process_floor()),
        "in_process_ready": summary(in_process_floor(ready=True)),
        "mcp_peer": summary(await mcp_peer_round_trip()),
        "line_client": {name: summary(samples) for name, samples in line_client_round_trips().items()},
    }
    results["throughput"] = {str(n): await throughput(n) for n in (1, 4, 16)}
    results["throughput_ceiling"] = in_process_ceiling()
    results["throughput_no_ready"] = {str(n): await throughput(n, ready_instances=False) for n in (1, 4, 16)}
    return results


if __name__ == "__main__":
    print(asyncio.run(run()))
