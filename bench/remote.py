"""The openai backend: the same model in the daemon and behind a server, and runs in flight together.

The server is llama-cpp-python's own (`llama_cpp.server`) on 127.0.0.1 with the embedded GGUF and
the default thread count; the in-process side is measured the same way in the same run, one after
the other so that they never share the cores. Concurrency sends RUNS_PER_LEVEL runs through one
daemon with `--max-concurrent-runs N`: throughput as N grows is the server's to give (this server
decodes one request at a time; llama-server with `--parallel`, vLLM and Ollama batch them).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_agent.runtime.models.llama import default_model_path, default_threads

from bench.agent import PROMPTS, TOOLS
from bench.common import BENCH_CACHE_DIR, bundled
from tests.model_server import llama_server
from tests.rpc import DaemonSession

TRIALS = 3
CONCURRENCY = (1, 2, 4)
RUNS_PER_LEVEL = 4
# Short answers with no tool, so that a level's time is the model's, not the tools'.
CONCURRENT_PROMPT = "Name three colours."
CONCURRENT_MAX_TOKENS = 32


async def daemon(tools: Path, *backend: str) -> DaemonSession:
    session = await DaemonSession.open(
        ["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR), *backend]
    )
    await session.request(
        "agent/run", {"prompt": "Good morning!", "toolChoice": "none"}, timeout=600
    )  # loaded
    return session


async def sequential_runs(session: DaemonSession, trials: int) -> dict[str, Any]:
    runs = []
    for _ in range(trials):
        for prompt in PROMPTS:
            started = time.perf_counter()
            result = await session.request("agent/run", {"prompt": prompt}, timeout=600)
            runs.append({"seconds": time.perf_counter() - started, **result})
    timings = [run["timings"] for run in runs]
    completion = sum(run["usage"]["completionTokens"] for run in runs)
    generation_seconds = sum(t["generationMs"] for t in timings) / 1000
    return {
        "runs": len(runs),
        "wall_seconds": statistics.median(run["seconds"] for run in runs),
        "first_token_ms": statistics.median(t["firstTokenMs"] or 0 for t in timings),
        "completion_tokens": completion,
        "tokens_per_second": completion / generation_seconds if generation_seconds else 0.0,
        "calls": sum(len(run["steps"]) for run in runs),
        "model": runs[0]["model"],
    }


async def concurrent_level(tools: Path, url: str, level: int) -> dict[str, Any]:
    session = await daemon(
        tools, "--backend", "openai", "--base-url", url, "--max-concurrent-runs", str(level)
    )
    params = {"prompt": CONCURRENT_PROMPT, "toolChoice": "none", "maxTokens": CONCURRENT_MAX_TOKENS}
    started = time.perf_counter()
    results = await asyncio.gather(
        *(session.request("agent/run", params, timeout=600) for _ in range(RUNS_PER_LEVEL))
    )
    seconds = time.perf_counter() - started
    await session.shutdown_and_exit()
    tokens = sum(result["usage"]["completionTokens"] for result in results)
    return {
        "runs": len(results),
        "seconds": seconds,
        "runs_per_minute": 60 * len(results) / seconds,
        "tokens_per_second": tokens / seconds,
    }


async def run(trials: int = TRIALS) -> dict[str, Any]:
    threads = default_threads()
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch)
        for name in TOOLS:
            shutil.copy2(bundled(name), tools / f"{name}.wasm")
        local_session = await daemon(tools)
        local = await sequential_runs(local_session, trials)
        await local_session.shutdown_and_exit()
        model = default_model_path(BENCH_CACHE_DIR)
        with llama_server(model, "--n_threads", str(threads), "--interrupt_requests", "False") as url:
            remote_session = await daemon(tools, "--backend", "openai", "--base-url", url)
            remote = await sequential_runs(remote_session, trials)
            await remote_session.shutdown_and_exit()
            levels = {str(level): await concurrent_level(tools, url, level) for level in CONCURRENCY}
    return {
        "threads": threads,
        "prompts": list(PROMPTS),
        "server": "llama_cpp.server",
        "local": local,
        "remote": remote,
        "concurrency": levels,
        "wall_ratio": remote["wall_seconds"] / local["wall_seconds"],
        "tokens_per_second_ratio": remote["tokens_per_second"] / local["tokens_per_second"],
    }
