"""Cold start, memory, and growth with the number of loaded tools."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_agent.config import BUNDLED_TOOLS_DIR, DaemonConfig, Locations
from llama_agent.core import open_core
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.runtime.models.llama import LlamaModel, default_model_path
from llama_agent.services.agent.prompting import completion_prompt
from llama_agent.services.agent.tool_selection import relevant_tools
from llama_agent.services.tools.settings import ToolSettings

from bench.common import BENCH_CACHE_DIR, bundled, summary
from bench.invoke import VALUE, daemon_session, echo_tools_dir
from tests.rpc import DaemonSession
from tests.wat_tools import tool_wasm

MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS")


def _status_mib(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status (given in KiB there), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


async def cold_start(trials: int = 10) -> dict[str, float]:
    """Spawn → initialize → tools/list answered, with the bundled tools already compiled and cached."""
    samples = []
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch)
        for name in ("echo", "print"):
            shutil.copy2(bundled(name), tools / f"{name}.wasm")
        for _ in range(trials + 1):  # the first run fills the cache
            started = time.perf_counter()
            daemon = await DaemonSession.open(
                ["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR), "--lazy-model"]
            )
            await daemon.request("tools/list")
            samples.append((time.perf_counter() - started) * 1000)
            await daemon.shutdown_and_exit()
    return summary(samples[1:])


async def memory(invocations: int = 10_000) -> dict[str, float]:
    """The daemon's RSS idle, with the model loaded, and after many invocations."""
    with tempfile.TemporaryDirectory() as scratch:
        daemon = await daemon_session(echo_tools_dir(Path(scratch)))
        pid = daemon.process.pid
        idle = rss_mib(pid)
        await daemon.request("agent/run", {"prompt": "Please echo back 'x'", "maxSteps": 1})
        with_model = rss_mib(pid)
        params = {"name": "echo", "arguments": {"value": VALUE}}
        for _ in range(invocations):
            await daemon.request("tools/invoke", params)
        after = rss_mib(pid)
        await daemon.shutdown_and_exit()
    return {"idle": idle, "with_model": with_model, "after_invocations": after, "invocations": invocations}


async def growth(counts: tuple[int, ...] = (1, 10, 100), calls: int = 200) -> dict[str, Any]:
    """Invoke latency and tools/list time as the number of loaded tools grows."""
    results: dict[str, Any] = {}
    for count in counts:
        with tempfile.TemporaryDirectory() as scratch:
            tools = Path(scratch)
            for index in range(count):
                (tools / f"t{index:03d}.wasm").write_bytes(tool_wasm(f"t{index:03d}"))
            daemon = await daemon_session(tools)
            params = {"name": "t000", "arguments": {"value": VALUE}}
            invoke, listing = [], []
            for _ in range(calls):
                started = time.perf_counter()
                await daemon.request("tools/invoke", params)
                invoke.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await daemon.request("tools/list")
                listing.append((time.perf_counter() - started) * 1000)
            await daemon.shutdown_and_exit()
        results[str(count)] = {"invoke": summary(invoke), "list": summary(listing)}
    return results


def private_mib(pid: int) -> float:
    """Memory only this process holds (its anonymous pages): what a worker adds to the machine."""
    return _status_mib(pid, "RssAnon")


def _dummy_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """A value of the right type for each required parameter: enough for the call to run."""
    dummies = {"string": "x", "integer": 1, "number": 1.0, "boolean": False}
    properties = schema.get("properties", {})
    return {
        name: properties[name].get("enum", [dummies[properties[name]["type"]]])[0]
        for name in schema.get("required", [])
    }


async def ready_memory() -> dict[str, Any]:
    """The worker processes' private memory after every tool was called in turn, twice: the 8 bundled
    tools (componentize-py, ~18 MB each), 100 small tools, and echo alone 100 times. Instances made
    ahead are kept for the 4 tools a worker called last, so this should not grow with the number of
    tools; a tool called again is kept ready on a second worker."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        bundled_dir, small_dir = Path(scratch) / "bundled", Path(scratch) / "small"
        shutil.copytree(BUNDLED_TOOLS_DIR, bundled_dir, ignore=shutil.ignore_patterns("*.toml"))
        small_dir.mkdir()
        for index in range(100):
            (small_dir / f"t{index:03d}.wasm").write_bytes(tool_wasm(f"t{index:03d}"))
        for label, tools in (("8", bundled_dir), ("100", small_dir), ("echo", bundled_dir)):
            daemon = await daemon_session(tools)
            listed = (await daemon.request("tools/list"))["tools"]
            if label == "echo":  # one tool called again and again: two workers keep it ready
                listed = [tool for tool in listed if tool["name"] == "echo"] * 50
            for _ in range(2):
                for tool in listed:
                    arguments = _dummy_arguments(tool["inputSchema"])
                    await daemon.request("tools/invoke", {"name": tool["name"], "arguments": arguments})
            await asyncio.sleep(1.0)  # the last instances made ahead
            workers = [int(pid) for pid in _children(daemon.process.pid)]
            results[label] = {
                "tools": len({tool["name"] for tool in listed}),
                "workers": len(workers),
                "private_mib": sum(private_mib(pid) for pid in workers),
                "daemon_private_mib": private_mib(daemon.process.pid),
            }
            await daemon.shutdown_and_exit()
    return results


def _children(pid: int) -> list[str]:
    """The processes `pid` started, from any of its threads (workers are started by one of them)."""
    return [
        child
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def prompt_tokens_by_tool_count(counts: tuple[int, ...] = (8, 100, 1000)) -> dict[str, dict[str, int]]:
    """The agent's first prompt, in tokens, with the 8 bundled tools plus small ones up to
    `count`: when every tool is offered, and when only those relevant to the prompt are (as the
    agent does past 8 tools)."""
    model = LlamaModel.load(default_model_path(BENCH_CACHE_DIR), ModelSettings(context_size=32768))
    prompt = "What time is it in Tokyo?"
    sizes: dict[str, dict[str, int]] = {}
    for count in counts:
        with tempfile.TemporaryDirectory() as scratch:
            tools_dir = Path(scratch)
            for bundled_tool in sorted(BUNDLED_TOOLS_DIR.glob("*.wasm")):
                shutil.copy2(bundled_tool, tools_dir / bundled_tool.name)
            for index in range(count - len(list(tools_dir.iterdir()))):
                description = f"Operates gadget model {index} of the warehouse robots."
                name = f"gadget{index:04d}"
                (tools_dir / f"{name}.wasm").write_bytes(tool_wasm(name, description=description))
            config = DaemonConfig(tools=ToolSettings((tools_dir,)), locations=Locations(BENCH_CACHE_DIR))
            core = open_core(config, watch=False)
            toolbox = core.toolbox
            tools = [toolbox.snapshot.tools[name] for name in sorted(toolbox.snapshot.tools)]
            offered = relevant_tools(tools, prompt)
            sizes[str(count)] = {
                "tools": len(tools),
                "all": model.count_tokens(completion_prompt(tools, prompt, [])),
                "offered": len(offered),
                "selected": model.count_tokens(completion_prompt(offered, prompt, [])),
            }
            core.close()
    return sizes
