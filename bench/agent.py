"""agent/run on the default model vs raw llama-cpp-python generating the same tokens from the same prompts."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_CACHE_DIR, bundled
from daemon.config import DaemonConfig
from daemon.core import build_core, load_tools
from daemon.runtime.model import default_model_path, default_threads
from daemon.services.prompting import Exchange, completion_prompt, turn_schema
from tests.rpc import DaemonSession

PROMPT = "Please echo back 'Something to echo'"
TRIALS = 5


def _turn_texts(daemon: DaemonSession, token: str) -> list[str]:
    """The model's turns of a run, rebuilt from its streamed progress."""
    turns = [""]
    for message in daemon.notifications:
        params = message.get("params") or {}
        if message["method"] != "$/progress" or params.get("token") != token:
            continue
        event = params["value"].get("llamaAgent", {})
        if event.get("event") == "text":
            turns[-1] += event["text"]
        elif event.get("event") == "toolCall":
            turns.append("")
    return [turn.strip() for turn in turns if turn.strip()]


async def agent_runs(tools: Path, trials: int) -> list[dict[str, Any]]:
    daemon = await DaemonSession.open(["--tools-dir", str(tools), "--cache-dir", str(BENCH_CACHE_DIR)])
    await daemon.request("agent/run", {"prompt": PROMPT, "maxSteps": 0})  # model loaded and warm
    runs = []
    for trial in range(trials):
        token = f"bench-{trial}"
        started = time.perf_counter()
        result = await daemon.request("agent/run", {"prompt": PROMPT, "workDoneToken": token})
        seconds = time.perf_counter() - started
        runs.append({"seconds": seconds, "result": result, "turns": _turn_texts(daemon, token)})
    await daemon.shutdown_and_exit()
    return runs


def raw_runs(tools_dir: Path, turns: list[str], observations: list[str], trials: int) -> list[dict[str, Any]]:
    """The same prompts and grammars through llama-cpp-python's own API, turn by turn."""
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

    from daemon.runtime.grammar import json_schema_to_gbnf

    core = load_tools(build_core(DaemonConfig(tools_dirs=(tools_dir,), cache_dir=BENCH_CACHE_DIR)))
    toolbox = core.toolbox
    tools = [toolbox.snapshot.tools[name] for name in sorted(toolbox.snapshot.tools)]
    llm = Llama(
        model_path=str(default_model_path(BENCH_CACHE_DIR)),
        n_ctx=4096,
        n_threads=default_threads(),
        seed=0,
        verbose=False,
    )
    runs = []
    for _ in range(trials):
        llm.reset()  # type: ignore[no-untyped-call]
        seconds, tokens, texts = 0.0, 0, []
        for index in range(len(turns)):  # every turn may call a tool: maxSteps is not reached
            transcript = [Exchange(turns[i], observations[i], False) for i in range(index)]
            prompt = completion_prompt(tools, PROMPT, transcript)
            # The daemon's own JSON Schema to GBNF conversion, so that both sides run one grammar.
            gbnf = json_schema_to_gbnf(json.dumps(turn_schema(tools)))
            grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            started = time.perf_counter()
            out: Any = llm.create_completion(prompt, max_tokens=256, temperature=0.0, grammar=grammar, seed=0)
            seconds += time.perf_counter() - started
            tokens += out["usage"]["completion_tokens"]
            texts.append(str(out["choices"][0]["text"]).strip())
        runs.append({"seconds": seconds, "completion_tokens": tokens, "turns": texts})
    core.close()
    return runs


async def run(trials: int = TRIALS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch)
        for name in ("echo", "print"):
            shutil.copy2(bundled(name), tools / f"{name}.wasm")
        agent = await agent_runs(tools, trials)
        first = agent[0]
        observations = [step["result"] for step in first["result"]["steps"]]
        raw = raw_runs(tools, first["turns"], observations, trials)
    agent_seconds = statistics.median(run["seconds"] for run in agent)
    raw_seconds = statistics.median(run["seconds"] for run in raw)
    agent_tokens = first["result"]["usage"]["completionTokens"]
    raw_tokens = raw[0]["completion_tokens"]
    return {
        "same_tokens": first["turns"] == raw[0]["turns"],
        "agent_turns": first["turns"],
        "raw_turns": raw[0]["turns"],
        "agent_seconds": [run["seconds"] for run in agent],
        "raw_seconds": [run["seconds"] for run in raw],
        "agent_tokens": agent_tokens,
        "raw_tokens": raw_tokens,
        "wall_ratio": agent_seconds / raw_seconds,
        "agent_tokens_per_second": agent_tokens / agent_seconds,
        "raw_tokens_per_second": raw_tokens / raw_seconds,
        "tokens_per_second_ratio": (agent_tokens / agent_seconds) / (raw_tokens / raw_seconds),
    }
