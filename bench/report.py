"""Turns benchmark results into RESULTS.md tables (goals marked met or missed) and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.batched import markdown as batched_markdown


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


def _goal(met: bool) -> str:
    return "met" if met else "**missed**"


def _latency_row(label: str, stats: dict[str, float]) -> str:
    return (
        f"| {label} | {_ms(stats['p50'])} | {_ms(stats['p90'])} | {_ms(stats['p99'])} | "
        f"{_ms(stats['min'])} to {_ms(stats['max'])} | {int(stats['n'])} |"
    )


# The daemon's resident memory goal with the model loaded, in MiB.
MEMORY_GOAL_MIB = 500

LATENCY_HEADER = "| | p50 | p90 | p99 | min to max | n |\n| --- | --- | --- | --- | --- | --- |"


def render_markdown(results: dict[str, Any]) -> str:
    invoke, rename = results["invoke"], results["hot_reload_rename"]
    compile_, agent = results["hot_reload_compile"], results["agent"]
    memory, growth = results["memory"], results["growth"]
    daemon_p50, floor_p50 = invoke["daemon"]["p50"], invoke["in_process"]["p50"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['started']} on {results['machine']['cpus']} cores, Python "
        f"{results['machine']['python']}, by `make bench` (`python -m bench.run`). Ratios are measured side "
        "by side in this run; absolute times move with the machine's load.",
        "",
        "![results](results.png)",
        "",
        "## 1. Invoke round trip (echo)",
        "",
        LATENCY_HEADER,
        _latency_row("daemon over stdio", invoke["daemon"]),
        _latency_row("daemon over stdio, no instance made ahead", invoke["daemon_no_ready"]),
        _latency_row("daemon over stdio, the part outside the tool host", invoke["daemon_protocol"]),
        _latency_row("daemon over stdio, a tool that is not there (refused)", invoke["protocol_only"]),
        _latency_row("wasmtime-py in-process: instantiate and call (floor)", invoke["in_process"]),
        _latency_row("wasmtime-py in-process: the call alone (made ahead)", invoke["in_process_ready"]),
        _latency_row(
            "MCP peer (FastMCP, stdio, plain Python), through the MCP SDK's client", invoke["mcp_peer"]
        ),
        *_line_client_rows(invoke),
        "",
        *_fair_goal(invoke),
        f"- Goal p50 below the in-process floor: {_goal(daemon_p50 < floor_p50)} "
        f"(daemon / floor p50 = {daemon_p50 / floor_p50:.2f}).",
        f"- Instances made ahead: p50 {daemon_p50 / invoke['daemon_no_ready']['p50']:.2f}x the daemon "
        "without them.",
        f"- Protocol and worker overhead over the call alone (p50): "
        f"{_ms(daemon_p50 - invoke['in_process_ready']['p50'])}: {_breakdown(invoke)}.",
        "",
        "## 2. Throughput",
        "",
        "| in flight | calls/s | calls/s, no instance made ahead | ratio | the machine's ceiling |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {n} | {rate:.0f} | {invoke['throughput_no_ready'][n]:.0f} | "
            f"{rate / invoke['throughput_no_ready'][n]:.2f}x | {invoke['throughput_ceiling']:.0f} |"
            for n, rate in invoke["throughput"].items()
        ],
        "",
        *_throughput_notes(invoke),
        "",
        "## 3. Hot reload",
        "",
        LATENCY_HEADER,
        _latency_row("cached component renamed in → tools/didChange", rename),
        _latency_row("echo invoke, idle", compile_["idle"]),
        _latency_row("echo invoke, while a Python component compiles", compile_["during_compile"]),
        "",
        f"- Goal rename → announced p50 ≤ 250 ms: {_goal(rename['p50'] <= 250)} ({_ms(rename['p50'])}).",
        f"- Compile of an uncached Python component: {compile_['compile_seconds']:.1f} s.",
        f"- Goal invoke p99 during the compile ≤ 2x idle: {_goal(compile_['p99_ratio'] <= 2)} "
        f"({compile_['p99_ratio']:.2f}x).",
        "",
        "## 4. Cold start (spawn → initialize → tools/list, bundled tools cached)",
        "",
        LATENCY_HEADER,
        _latency_row("cold start", results["cold_start"]),
        "",
        "## 5. Generation: the agent against unconstrained llama-cpp-python",
        "",
        *_generation_section(agent),
        "",
        "## 6. The same model behind a server (openai backend)",
        "",
        *_remote_section(results["remote"]),
        "",
        "## 7. Memory",
        "",
        "| state | RSS |",
        "| --- | --- |",
        f"| idle (tools loaded, no model) | {memory['idle']:.0f} MiB |",
        f"| model loaded, after one agent/run | {memory['with_model']:.0f} MiB |",
        f"| after {memory['invocations']:,} more invocations | {memory['after_invocations']:.0f} MiB |",
        "",
        *_memory_parts_section(results.get("memory_parts")),
        *_ready_memory_section(results["ready_memory"]),
        "",
        "## 8. Growth with the number of tools",
        "",
        "| tools | invoke p50 | invoke p99 | tools/list p50 |",
        "| --- | --- | --- | --- |",
        *[
            f"| {count} | {_ms(row['invoke']['p50'])} | {_ms(row['invoke']['p99'])} | "
            f"{_ms(row['list']['p50'])} |"
            for count, row in growth.items()
        ],
        "",
        "## 8b. Several runs at once on the local model (sequences of one batch)",
        "",
        "| decoding | tokens/s (decode) | ratio |",
        "| --- | --- | --- |",
        *(batched_markdown(results["batched"]) if "batched" in results else ["| not measured | | |"]),
        "",
        "## 9. Prompt size with many tools",
        "",
        'The agent\'s first prompt for "What time is it in Tokyo?": the 8 bundled tools plus small',
        "ones. Past 8 tools the agent offers only those relevant to the prompt (BM25).",
        "",
        "| tools loaded | prompt tokens, all offered | tools offered | prompt tokens, as offered |",
        "| --- | --- | --- | --- |",
        *[
            f"| {row['tools']} | {row['all']:,} | {row['offered']} | {row['selected']:,} |"
            for row in results["prompt_tokens"].values()
        ],
        "",
    ]
    return "\n".join(lines)


def _breakdown(invoke: dict[str, Any]) -> str:
    """Where the daemon's p50 goes: each call's round trip less the daemon's own timing of its job
    is the protocol's share, the call alone on an instance made ahead is the guest's, the rest is
    the worker pool and process."""
    daemon, protocol = invoke["daemon"]["p50"], invoke["daemon_protocol"]["p50"]
    call = invoke["in_process_ready"]["p50"]
    return (
        f"protocol (stdio both ways, framing, pygls, JSON) {_ms(protocol)}, worker pool and the hop to "
        f"the worker process {_ms(daemon - protocol - call)}, the call itself {_ms(call)}"
    )


def _context_row(context: dict[str, Any]) -> str:
    cells, sequences = context.get("cells", 0), context.get("sequences", 1)
    if sequences == 1:
        shape = f"{cells:,} cells, 1 sequence"
    elif context.get("shared", True):
        shape = f"{cells:,} cells shared by {sequences} sequences"
    else:
        shape = f"{sequences} sequences of {cells:,} cells each"
    return (
        f"| {shape} | {context['kv']:.0f} MiB ({context.get('type', '?')}) | {context['output']:.0f} MiB | "
        f"{context['compute']:.0f} MiB |"
    )


def _ready_memory_section(ready: dict[str, Any]) -> list[str]:
    labels = {
        "8": "the 8 bundled tools (componentize-py), each called twice in turn",
        "100": "100 small tools, each called twice in turn",
        "echo": "echo alone, 100 times in a row",
    }
    return [
        "Worker processes (calls and instances made ahead) after the calls, their private memory:",
        "",
        "| calls | tools | workers | workers' private memory | daemon's private memory |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {labels[label]} | {row['tools']} | {row['workers']} | {row['private_mib']:.0f} MiB | "
            f"{row['daemon_private_mib']:.0f} MiB |"
            for label, row in ready.items()
        ],
    ]


def _generation_section(generation: dict[str, Any]) -> list[str]:
    default = str(generation["default_threads"])
    raw, agent = generation["raw"], generation["agent"]
    lines = [
        f"Raw: `Llama.create_completion` streaming {raw[default]['tokens']} tokens from the agent's first "
        f"prompt ({raw[default]['prompt_tokens']:,} tokens), no grammar. Agent: `agent/run` over stdio on "
        f"{len(generation['prompts'])} requests x {agent[default]['runs'] // len(generation['prompts'])}, "
        "tokens over the time its turns spent after their first token (grammar, progress, protocol in it).",
        "",
        "| | threads | decode tokens/s | first token (median) | prompt evaluation |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [_raw_row(threads, raw[threads]) for threads in sorted(raw, key=int)]
    lines += [_agent_row(threads, agent[threads]) for threads in sorted(agent, key=int)]
    ratio = generation["tokens_per_second_ratio"]
    lines += [
        "",
        f"- Goal agent tokens/s ≥ 90% of unconstrained raw at the default {default} thread(s): "
        f"{_goal(ratio >= 0.9)} ({ratio * 100:.0f}%).",
        "- Agent wall time per run (median): "
        + ", ".join(f"{_s(agent[t]['wall_seconds'])} on {t} thread(s)" for t in sorted(agent, key=int))
        + ".",
        *_first_token_goals(generation),
    ]
    return lines


def _first_token_goals(generation: dict[str, Any]) -> list[str]:
    default = str(generation["default_threads"])
    raw, first = generation["raw"][default], generation["first_run"]
    floor, prepared = generation["first_token_floor_ratio"], first["prepared_ratio"]
    return [
        f"- Goal first token ≤ 2x the floor (raw llama-cpp-python evaluating the request's "
        f"{raw['floor_tokens']} tokens after the same cached start and picking one token: "
        f"{_ms(raw['floor_ms'])}): {_goal(floor <= 2)} ({floor:.1f}x).",
        f"- Goal a new daemon's first run ≤ 2x a warm one's (first token of its first request, the "
        f"model loaded): nothing in the cache {_ms(first['cold_ms'])} ({first['cold_ratio']:.1f}x); after "
        f"`llama-agent prepare` ({_s(first['prepare_seconds'])}) {_ms(first['prepared_ms'])}: "
        f"{_goal(prepared <= 2)} ({prepared:.1f}x; warm {_ms(first['warm_ms'])}).",
    ]


def _remote_section(remote: dict[str, Any]) -> list[str]:
    local, served = remote["local"], remote["remote"]
    lines = [
        f"`agent/run` over stdio on the requests of section 5, {local['runs']} runs each way, the embedded "
        f"model on {remote['threads']} thread(s): in the daemon, then behind {remote['server']} on "
        "127.0.0.1 (`--backend openai`; the daemon sends chat messages, the server applies its template "
        "and its own grammar from the schema; no tool router, which needs the model in-process).",
        "",
        "| backend | agent wall time (median) | first token (median) | decode tokens/s | tool calls |",
        "| --- | --- | --- | --- | --- |",
        _backend_row("in the daemon (llama)", local),
        _backend_row(f"{remote['server']} (openai)", served),
        "",
        f"- Remote / local: wall time {remote['wall_ratio']:.2f}x, decode tokens/s "
        f"{remote['tokens_per_second_ratio']:.2f}x.",
        "",
        "Runs in flight together through one daemon (`--max-concurrent-runs N`), all against the one server:",
        "",
        "| N | runs | wall time | runs/min | tokens/s, all runs |",
        "| --- | --- | --- | --- | --- |",
    ]
    base = remote["concurrency"]["1"]["runs_per_minute"]
    lines += [
        f"| {level} | {row['runs']} | {_s(row['seconds'])} | {row['runs_per_minute']:.1f} "
        f"({row['runs_per_minute'] / base:.2f}x) | {row['tokens_per_second']:.1f} |"
        for level, row in remote["concurrency"].items()
    ]
    return lines


def _backend_row(label: str, row: dict[str, Any]) -> str:
    return (
        f"| {label} | {_s(row['wall_seconds'])} | {_ms(row['first_token_ms'])} | "
        f"{row['tokens_per_second']:.1f} | {row['calls']} |"
    )


def _raw_row(threads: str, row: dict[str, Any]) -> str:
    return (
        f"| raw, unconstrained | {threads} | {row['tokens_per_second']:.1f} | "
        f"{_ms(row['first_token_ms'])} (prompt cached) | {row['prompt_tokens']:,} tokens from nothing: "
        f"{_ms(row['prompt_eval_ms'])} ({row['prompt_tokens_per_second']:.0f} tokens/s) |"
    )


def _agent_row(threads: str, row: dict[str, Any]) -> str:
    return (
        f"| agent/run | {threads} | {row['tokens_per_second']:.1f} | {_ms(row['first_token_ms'])} "
        f"(routing {_ms(row['routing_ms'])}) | {row['cached_fraction'] * 100:.0f}% of prompt tokens "
        f"reused; {_ms(row['prompt_ms'])} a run (median of {row['prompt_tokens']:,.0f} tokens) |"
    )


def _line_client_rows(invoke: dict[str, Any]) -> list[str]:
    if "line_client" not in invoke:
        return []
    fair = invoke["line_client"]
    return [
        _latency_row(
            "daemon over stdio, the minimal line client (interleaved with the peer)", fair["daemon"]
        ),
        _latency_row(
            "MCP peer, the same minimal line client (interleaved with the daemon)", fair["mcp_peer"]
        ),
    ]


def _fair_goal(invoke: dict[str, Any]) -> list[str]:
    """The echo round trip goal compares servers: both through the same client, interleaved. The
    MCP SDK's client (async, pydantic) is slower than the tests' asyncio client, so the figure
    through it is given apart, as the cost of that client, not a goal."""
    sdk = invoke["mcp_peer"]["p50"] / invoke["daemon"]["p50"]
    lines = []
    if "line_client" in invoke:
        fair = invoke["line_client"]
        ratio = fair["daemon"]["p50"] / fair["mcp_peer"]["p50"]
        lines.append(
            f"- Goal p50 ≤ 1.0x the MCP peer, both through the same minimal line client (newline-delimited "
            "JSON to the peer, `Content-Length` frames to the daemon, nothing else different), in "
            f"alternating batches: {_goal(ratio <= 1.0)} (daemon / peer p50 = {ratio:.2f}, "
            f"{_ms(fair['daemon']['p50'])} against {_ms(fair['mcp_peer']['p50'])})."
        )
    lines.append(
        f"- Through the MCP SDK's `ClientSession` the peer's p50 is {_ms(invoke['mcp_peer']['p50'])}, "
        f"{sdk:.2f}x the daemon's through the tests' asyncio client: that compares clients as much as "
        "servers."
    )
    return lines


def _throughput_notes(invoke: dict[str, Any]) -> list[str]:
    ceiling, at_16 = invoke["throughput_ceiling"], invoke["throughput"]["16"]
    return [
        f"- The machine's ceiling: {ceiling:.0f} calls/s with a fresh instance each, in-process, one process "
        f"per core, with no protocol, daemon or client; the daemon reaches {at_16 / ceiling:.2f}x of it at "
        "16 in flight (its client and workers share the same cores)."
    ]


_MEMORY_PARTS = {
    "weights": "model weights (the .gguf mapped, file-backed)",
    "llama_buffers": "llama.cpp's buffers: KV caches, compute buffers as used, logits, repacked weights "
    "(large anonymous mappings)",
    "heap": "malloc's main heap",
    "arenas": "glibc's other arenas (threads' mallocs)",
    "anonymous": "other anonymous memory (Python's object arenas, stacks)",
    "files": "the program's files (interpreter, libraries)",
}


def _memory_parts_section(parts: dict[str, Any] | None) -> list[str]:
    """Where the RSS with the model loaded goes (bench/system.py, memory_parts)."""
    if parts is None:
        return []
    default, arenas = parts["default"]["resident"], parts["arena_max_2"]["resident"]
    allocated = parts["default"]["allocated"]
    total = default["rss"]
    return [
        "Where the RSS goes with the model loaded, after one agent/run (generation and tool routing), "
        "from /proc/PID/smaps:",
        "",
        "| part | resident | with MALLOC_ARENA_MAX=2 |",
        "| --- | --- | --- |",
        *[
            f"| {label} | {default[key]:.0f} MiB | {arenas[key]:.0f} MiB |"
            for key, label in _MEMORY_PARTS.items()
        ],
        f"| **total RSS** | **{total:.0f} MiB** | {arenas['rss']:.0f} MiB |",
        "",
        "llama.cpp's contexts over the one copy of the weights (its own figures; compute buffers are "
        f"reserved and resident only as far as used; {allocated['repacked']:.0f} MiB of weights repacked "
        "for the CPU besides):",
        "",
        "| context | KV cache | logits | compute, reserved |",
        "| --- | --- | --- | --- |",
        *[_context_row(context) for context in allocated["contexts"]],
        "",
        f"- Goal ≤ {MEMORY_GOAL_MIB} MiB resident with the model loaded: {_goal(total <= MEMORY_GOAL_MIB)} "
        f"({total:.0f} MiB). The weights and the KV caches alone come to "
        f"{default['weights'] + sum(context['kv'] for context in allocated['contexts']):.0f} MiB.",
        "",
    ]


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def render_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right, generation, served) = plt.subplots(1, 5, figsize=(25, 4.5))
    invoke = results["invoke"]
    labels = [
        "daemon",
        "daemon,\nnone ahead",
        "in-process\nfloor",
        "in-process\ncall alone",
        "MCP peer,\nSDK client",
    ]
    stats = [invoke[k] for k in ("daemon", "daemon_no_ready", "in_process", "in_process_ready", "mcp_peer")]
    if "line_client" in invoke:
        labels += ["daemon,\nline client", "MCP peer,\nline client"]
        stats += [invoke["line_client"]["daemon"], invoke["line_client"]["mcp_peer"]]
        peer = invoke["line_client"]["mcp_peer"]["p50"]
        left.axhline(peer, color="red", linestyle="--", label="goal p50: 1.0x peer (line client)")
    left.bar(labels, [s["p50"] for s in stats], label="p50")
    left.bar(
        labels, [s["p99"] - s["p50"] for s in stats], bottom=[s["p50"] for s in stats], alpha=0.4, label="p99"
    )
    left.axhline(invoke["in_process"]["p50"], color="purple", linestyle=":", label="goal p50: below floor")
    left.set_ylabel("ms")
    left.set_title("echo round trip")
    left.legend()

    compile_ = results["hot_reload_compile"]
    middle.bar(["idle", "during compile"], [compile_["idle"]["p99"], compile_["during_compile"]["p99"]])
    middle.axhline(2 * compile_["idle"]["p99"], color="red", linestyle="--", label="goal: 2x idle")
    middle.set_ylabel("invoke p99, ms")
    middle.set_title(f"hot reload (rename → announced p50 {results['hot_reload_rename']['p50']:.0f} ms)")
    middle.legend()

    growth = results["growth"]
    counts = list(growth)
    right.plot(counts, [growth[c]["invoke"]["p50"] for c in counts], marker="o", label="invoke p50")
    right.plot(counts, [growth[c]["list"]["p50"] for c in counts], marker="o", label="tools/list p50")
    right.set_xlabel("loaded tools")
    right.set_ylabel("ms")
    right.set_title("growth")
    right.legend()

    _plot_generation(generation, results["agent"])
    _plot_concurrency(served, results["remote"])
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _plot_generation(axes: Any, generation: dict[str, Any]) -> None:
    threads = sorted(generation["raw"], key=int)
    width = 0.38
    positions = range(len(threads))
    axes.bar(
        [x - width / 2 for x in positions],
        [generation["raw"][t]["tokens_per_second"] for t in threads],
        width,
        label="raw, unconstrained",
    )
    axes.bar(
        [x + width / 2 for x in positions],
        [generation["agent"][t]["tokens_per_second"] for t in threads],
        width,
        label="agent/run",
    )
    axes.set_xticks(list(positions), [f"{t} thread(s)" for t in threads])
    axes.set_ylabel("decode tokens/s")
    axes.set_title(f"generation (goal: agent ≥ 90% of raw at {generation['default_threads']})")
    axes.legend()


def _plot_concurrency(axes: Any, remote: dict[str, Any]) -> None:
    levels = list(remote["concurrency"])
    axes.plot(levels, [remote["concurrency"][n]["runs_per_minute"] for n in levels], marker="o")
    axes.set_xlabel("runs in flight (--max-concurrent-runs)")
    axes.set_ylabel("agent runs/min")
    axes.set_ylim(bottom=0)
    axes.set_title(f"openai backend, one {remote['server']}")
