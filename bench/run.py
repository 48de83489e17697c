"""Runs every benchmark in one process tree; writes bench/RESULTS.md and bench/results.png.

    .venv/bin/python -m bench.run        (or: make bench)

Ratios measured side by side in this one run are the headline figures; absolute times
depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench import agent, batched, hot_reload, invoke, remote, system
from bench.report import render_markdown, render_plot

HERE = Path(__file__).parent


async def collect() -> dict[str, Any]:
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    steps = [
        ("invoke", invoke.run),
        ("hot_reload_rename", hot_reload.rename_to_announce),
        ("hot_reload_compile", hot_reload.invoke_during_compile),
        ("cold_start", system.cold_start),
        ("agent", agent.run),
        ("batched", batched.run),
        ("remote", remote.run),
        ("memory", system.memory),
        ("memory_parts", system.memory_accounting),
        ("ready_memory", system.ready_memory),
        ("growth", system.growth),
    ]
    for name, step in steps:
        print(f"bench: {name} …", flush=True)
        started = time.perf_counter()
        results[name] = await step()
        print(f"bench: {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    results["prompt_tokens"] = system.prompt_tokens_by_tool_count()
    results["machine"] = {"cpus": _cpus(), "python": platform.python_version()}
    return results


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    results = asyncio.run(collect())
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    (HERE / "RESULTS.md").write_text(render_markdown(results))
    render_plot(results, HERE / "results.png")
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results.png'}")


if __name__ == "__main__":
    main()
