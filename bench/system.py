"""Cold start, memory, and growth with the number of loaded tools."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
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


# llama.cpp's own figures for what it allocates, from its log (the daemon's at -v). Each context
# logs its logits ("output") buffer first, then its KV caches (two for Gemma 3: its sliding-window
# layers and the others), then its compute buffer.
_OUTPUT = re.compile(r"output buffer size = +([\d.]+) MiB")
_KV = re.compile(
    r"kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +\d+ layers, +(\d+)/(\d+) seqs\), K \((\w+)\)"
)
_COMPUTE = re.compile(r"compute buffer size = +([\d.]+) MiB")
_REPACKED = re.compile(r"REPACK model buffer size = +([\d.]+) MiB")
# ggml allocates each buffer on its own (mmap-backed) block; smaller anonymous mappings are
# malloc's, Python's and the threads' stacks.
_LARGE_MAPPING = 8 * MIB
# A glibc arena other than the main one reserves 64 MiB, aligned to 64 MiB.
_ARENA = 64 * MIB


@dataclass
class Mapping:
    start: int
    end: int
    name: str  # the file, [heap], [stack] or "" (anonymous)
    rss_kib: int


def smaps(pid: int) -> list[Mapping]:
    """Every mapping of the process and its resident size, from /proc/PID/smaps."""
    mappings: list[Mapping] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            start, end = (int(value, 16) for value in fields[0].split("-"))
            mappings.append(Mapping(start, end, fields[5] if len(fields) > 5 else "", 0))
        elif fields[0] == "Rss:":
            mappings[-1].rss_kib = int(fields[1])
    return mappings


def resident_parts(mappings: list[Mapping]) -> dict[str, float]:
    """RSS split by what holds it, in MiB: the model's weights (the .gguf mapped), llama.cpp's
    buffers (large anonymous mappings), malloc's main heap, glibc's other arenas (64 MiB-aligned
    anonymous reservations), other anonymous memory (Python's object arenas, stacks) and the
    program's files (interpreter, libraries)."""
    parts = dict.fromkeys(("weights", "llama_buffers", "heap", "arenas", "anonymous", "files"), 0.0)
    for mapping in mappings:
        size = mapping.end - mapping.start
        if mapping.name.endswith(".gguf"):
            part = "weights"
        elif mapping.name == "[heap]":
            part = "heap"
        elif mapping.name.startswith("/"):
            part = "files"
        elif mapping.name:  # [stack], [vdso], ...
            part = "anonymous"
        elif mapping.start % _ARENA == 0 and size <= _ARENA:
            part = "arenas"
        elif size >= _LARGE_MAPPING:
            part = "llama_buffers"
        else:
            part = "anonymous"
        parts[part] += mapping.rss_kib / 1024
    parts["total"] = sum(parts.values())
    return parts


def llama_buffers(log: str) -> dict[str, Any]:
    """What llama.cpp says it allocated, in MiB: each context's KV cache (with its cells, its
    sequences, and whether they share the cells, and the cache's type), logits and compute buffer
    (reserved; resident only as far as used), and the weights it repacked for the CPU."""
    contexts: list[dict[str, Any]] = []
    for line in log.splitlines():
        if output := _OUTPUT.search(line):
            contexts.append({"output": float(output[1]), "kv": 0.0, "compute": 0.0})
        elif (kv := _KV.search(line)) and contexts:
            size, cells, sequences, streams, kind = kv.groups()
            contexts[-1]["kv"] += float(size)
            contexts[-1].update(cells=int(cells), sequences=int(sequences), shared=streams == "1", type=kind)
        elif (compute := _COMPUTE.search(line)) and contexts:
            contexts[-1]["compute"] = float(compute[1])
    return {"contexts": contexts, "repacked": sum(float(size) for size in _REPACKED.findall(log))}


async def memory_parts(environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Where the daemon's RSS goes with the model loaded after one agent/run (generation and tool
    routing both used), with `environment` added to the daemon's (MALLOC_ARENA_MAX, ...)."""
    with tempfile.TemporaryDirectory() as scratch:
        log_file = Path(scratch) / "daemon.log"
        env = {**os.environ, **(environment or {})}
        daemon = await DaemonSession.open(
            [
                "--tools-dir",
                str(echo_tools_dir(Path(scratch))),
                "--cache-dir",
                str(BENCH_CACHE_DIR),
                "--lazy-model",
                "-v",
                "--log-file",
                str(log_file),
            ],
            env=env,
        )
        await daemon.request("agent/run", {"prompt": "Please echo back 'x'", "maxSteps": 1})
        parts = resident_parts(smaps(daemon.process.pid))
        parts["rss"] = rss_mib(daemon.process.pid)
        await daemon.shutdown_and_exit()
        return {"resident": parts, "allocated": llama_buffers(log_file.read_text(errors="replace"))}


async def memory_accounting() -> dict[str, Any]:
    """memory_parts as the daemon runs, and with glibc held to 2 arenas."""
    return {"default": await memory_parts(), "arena_max_2": await memory_parts({"MALLOC_ARENA_MAX": "2"})}


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


if __name__ == "__main__":  # the memory accounting alone: python -m bench.system
    import json

    print(json.dumps(asyncio.run(memory_accounting()), indent=2))
