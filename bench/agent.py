"""Generation: agent/run over stdio against raw llama-cpp-python generating without any
constraint, at the same thread count; time to first token and what prompt evaluation costs.

Raw generation is `Llama.create_completion` streaming RAW_TOKENS tokens (end of generation
banned, so that every trial decodes as many) from the agent's own first prompt; its decode rate
is measured between the first and the last token, so prompt evaluation is not in it. The
agent's decode rate is its completion tokens over `timings.generationMs`, the time its turns
spent after their first token: the grammar, the tool router's plan, streaming every piece as
`$/progress` and the protocol are in it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_agent.config import DaemonConfig, Locations
from llama_agent.core import open_core
from llama_agent.runtime.models.llama import default_model_path, default_threads
from llama_agent.services.agent.prompting import completion_prompt, completion_start
from llama_agent.services.tools.settings import ToolSettings

from bench.common import BENCH_CACHE_DIR, bundled
from tests.rpc import DaemonSession

PROMPTS = ("Please echo back 'Something to echo'", "What is 17 * 23?", "Please print 'build finished'")
TOOLS = ("calc", "echo", "print")
TRIALS = 3
RAW_TOKENS = 128


async def agent_runs(tools: Path, threads: int, trials: int) -> dict[str, Any]:
    """Every prompt `trials` times, in turn, in one daemon whose model is loaded first."""
    daemon = await DaemonSession.open(
        ["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR), "--threads", str(threads)]
    )
    await daemon.request("agent/run", {"prompt": "Good morning!", "toolChoice": "none"})  # loaded
    runs = []
    for _ in range(trials):
        for prompt in PROMPTS:
            started = time.perf_counter()
            result = await daemon.request("agent/run", {"prompt": prompt, "workDoneToken": "bench"})
            runs.append({"seconds": time.perf_counter() - started, **result})
    await daemon.shutdown_and_exit()
    usage = [run["usage"] for run in runs]
    timings = [run["timings"] for run in runs]
    completion = sum(u["completionTokens"] for u in usage)
    cached = sum(u["cachedPromptTokens"] for u in usage)
    return {
        "threads": threads,
        "runs": len(runs),
        "wall_seconds": statistics.median(run["seconds"] for run in runs),
        "first_token_ms": statistics.median(t["firstTokenMs"] for t in timings),
        "routing_ms": statistics.median(t["routingMs"] for t in timings),
        "prompt_ms": statistics.median(t["promptMs"] for t in timings),
        "generation_ms": statistics.median(t["generationMs"] for t in timings),
        "prompt_tokens": statistics.median(u["promptTokens"] for u in usage),
        "cached_fraction": cached / sum(u["promptTokens"] for u in usage),
        "completion_tokens": completion,
        "tokens_per_second": completion / (sum(t["generationMs"] for t in timings) / 1000),
    }


async def first_runs(tools: Path, threads: int) -> dict[str, Any]:
    """The first request of a new daemon (its model loaded first, by a request that needs no
    prompt start), by what its cache holds: nothing (a new machine), what `llama-agent prepare`
    keeps (`make run`'s set-up), and what an earlier daemon's run left."""
    with tempfile.TemporaryDirectory(dir=BENCH_CACHE_DIR.parent) as scratch:
        caches = {name: Path(scratch, name) for name in ("cold", "prepared")}
        for cache in caches.values():  # the model and compiled tools, but no prompt state
            for kept in ("models", "components"):
                shutil.copytree(BENCH_CACHE_DIR / kept, cache / kept, copy_function=os.link)
            shutil.copy2(BENCH_CACHE_DIR / "signing.key", cache / "signing.key")
        started = time.perf_counter()
        command = [str(Path(sys.executable).with_name("llama-agent")), "prepare", "--tools-dir", str(tools)]
        options = ["--cache-dir", str(caches["prepared"]), "--threads", str(threads)]
        subprocess.run([*command, *options], check=True, capture_output=True)
        prepare_seconds = time.perf_counter() - started
        cold = await _first_run(tools, caches["cold"], threads)
        prepared = await _first_run(tools, caches["prepared"], threads)
        warm = await _first_run(tools, caches["cold"], threads)  # what the cold run kept
    return {
        "cold_ms": cold,
        "prepared_ms": prepared,
        "warm_ms": warm,
        "prepare_seconds": prepare_seconds,
        "cold_ratio": cold / warm,
        "prepared_ratio": prepared / warm,
    }


async def _first_run(tools: Path, cache: Path, threads: int) -> float:
    args = ["--tools-dir", str(tools), "--cache-dir", str(cache), "--threads", str(threads)]
    daemon = await DaemonSession.open(args)
    try:
        await daemon.request("agent/run", {"prompt": "Good morning!", "toolChoice": "none"})  # loaded
        result = await daemon.request("agent/run", {"prompt": PROMPTS[0]})
    finally:
        await daemon.shutdown_and_exit()
    return float(result["timings"]["firstTokenMs"])


def first_prompt(tools_dir: Path) -> tuple[str, str]:
    """The agent's first-turn prompt for the first request, routed to echo, and the start of it
    that the agent keeps evaluated."""
    config = DaemonConfig(tools=ToolSettings((tools_dir,)), locations=Locations(BENCH_CACHE_DIR))
    core = open_core(config, watch=False)
    try:
        tools = [core.toolbox.snapshot.tools[name] for name in sorted(core.toolbox.snapshot.tools)]
        echo = core.toolbox.snapshot.tools["echo"]
        prompt = completion_prompt(tools, PROMPTS[0], [], focus=echo)
        return prompt, completion_start(tools, PROMPTS[0], focus=echo)
    finally:
        core.close()


def raw_runs(prompt: str, cached: str, threads: int, trials: int) -> dict[str, Any]:
    """llama-cpp-python's own API: the prompt evaluated from nothing, then unconstrained
    streaming from it (the prompt cached but for its last token, as the agent's turns are)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(default_model_path(BENCH_CACHE_DIR)),
        n_ctx=4096,
        n_threads=threads,
        seed=0,
        verbose=False,
    )
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    evaluations = []
    for _ in range(trials):
        llm.reset()  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        llm.eval(tokens)
        evaluations.append(time.perf_counter() - started)
    first_token, rates = [], []
    for _ in range(trials):
        started = time.perf_counter()
        stamps = []
        stream: Any = llm.create_completion(
            prompt,
            max_tokens=RAW_TOKENS,
            temperature=0.0,
            stream=True,
            logit_bias={llm.token_eos(): float("-inf")},
        )
        for _chunk in stream:
            stamps.append(time.perf_counter())
        first_token.append(stamps[0] - started)
        rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    return {
        "threads": threads,
        "prompt_tokens": len(tokens),
        "prompt_eval_ms": statistics.median(evaluations) * 1000,
        "prompt_tokens_per_second": len(tokens) / statistics.median(evaluations),
        "first_token_ms": statistics.median(first_token) * 1000,
        "tokens_per_second": statistics.median(rates),
        "tokens": RAW_TOKENS,
        **_floor(llm, tokens, cached, trials),
    }


def _floor(llm: Any, tokens: list[int], cached: str, trials: int) -> dict[str, Any]:
    """The floor for the agent's first token: the prompt's start that the agent keeps evaluated
    (`cached`) held in the context, then just the request's tokens evaluated and one token picked
    (greedy, no grammar, no router)."""
    import numpy as np

    start = llm.tokenize(cached.encode("utf-8"), add_bos=True, special=True)
    held = next((i for i, (a, b) in enumerate(zip(start, tokens, strict=False)) if a != b), len(start))
    llm.reset()
    llm.eval(tokens[:held])
    times = []
    for _ in range(trials):
        llm._ctx.kv_cache_seq_rm(-1, held, -1)
        llm.n_tokens = held
        started = time.perf_counter()
        llm.eval(tokens[held:])
        int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))))
        times.append(time.perf_counter() - started)
    return {"floor_ms": statistics.median(times) * 1000, "floor_tokens": len(tokens) - held}


async def run(trials: int = TRIALS) -> dict[str, Any]:
    threads = sorted({1, default_threads()})
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch)
        for name in TOOLS:
            shutil.copy2(bundled(name), tools / f"{name}.wasm")
        prompt, cached = first_prompt(tools)
        raw = {count: raw_runs(prompt, cached, count, trials) for count in threads}
        agent = {count: await agent_runs(tools, count, trials) for count in threads}
        first = await first_runs(tools, default_threads())
    default = default_threads()
    return {
        "default_threads": default,
        "prompts": list(PROMPTS),
        "raw": {str(count): value for count, value in raw.items()},
        "agent": {str(count): value for count, value in agent.items()},
        "tokens_per_second_ratio": agent[default]["tokens_per_second"] / raw[default]["tokens_per_second"],
        "first_token_floor_ratio": agent[default]["first_token_ms"] / raw[default]["floor_ms"],
        "first_run": first,
    }
