"""bench/load/RESULTS.md and latency.png from a load run's results (bench/load/results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# The goals, as ratios in one run.
RATIO_GOAL = 5.0
SERVED_BY_OTHER_GOAL_S = 2.0
METHOD_ORDER = (
    "tools/list",
    "tools/invoke echo",
    "tools/invoke read_file",
    "tools/invoke calc",
    "tools/invoke",
    "agent/run",
    "all",
)


def goal(met: bool) -> str:
    return "met" if met else "**missed**"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def level_table(levels: dict[str, Any]) -> list[str]:
    lines = [
        "| sessions | request | n | p50 ms | p95 ms | p99 ms | req/s | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in sorted(levels, key=int):
        methods = levels[key]["methods"]
        for name in [m for m in METHOD_ORDER if m in methods]:
            row = methods[name]
            lines.append(
                f"| {key} | {name} | {int(row['n'])} | {ms(row.get('p50'))} | {ms(row.get('p95'))} | "
                f"{ms(row.get('p99'))} | {row['rps']:.1f} | {int(row['errors'])} |"
            )
    return lines


def resources_table(levels: dict[str, Any]) -> list[str]:
    names = sorted({n for level in levels.values() for n in level["cpu_share"]})
    rss_names = sorted({n for level in levels.values() for n in level["rss"]})
    lines = [
        "| sessions | "
        + " | ".join(f"CPU {n}" for n in names)
        + " | "
        + " | ".join(f"RSS {n}" for n in rss_names)
        + " |",
        "| ---: |" + " ---: |" * (len(names) + len(rss_names)),
    ]
    for key in sorted(levels, key=int):
        level = levels[key]
        shares = " | ".join(f"{100 * level['cpu_share'].get(n, 0):.1f}%" for n in names)
        rss = " | ".join(f"{level['rss'].get(n, 0) / MIB:.0f} MiB" for n in rss_names)
        lines.append(f"| {key} | {shares} | {rss} |")
    return lines


def errors_total(levels: dict[str, Any]) -> int:
    return sum(int(level["methods"]["all"]["errors"]) for level in levels.values())


def fault_lines(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    kill = results.get("kill")
    if kill:
        failed = sum(kill["failed"].values())
        lines += [
            f"- **kill -9 of replica 2** at mid-load (50 sessions, "
            f"{kill.get('sessions_on_killed_replica', 0):.0f} of them on it): "
            f"{failed} failed requests ({kill.get('failed_by_method') or kill['failed'] or 'none'}), "
            f"{kill['lost_in_flight']} in flight "
            f"on connections that ended without a close frame: {goal(failed <= kill['lost_in_flight'])} "
            "(failed ≤ in flight).",
            f"  New sessions served by the other replica {kill['served_by_other_after_s']:.1f} s after the "
            f"kill ({kill['probes_failed']} of {kill['probes']} probes failed): "
            f"{goal(kill['served_by_other_after_s'] <= SERVED_BY_OTHER_GOAL_S)} (≤ 2 s).",
            f"  Files: {goal(kill['files']['intact'])} (workspace files unchanged, "
            f"{len(kill['files']['grants_files'])} grants files whole, "
            f"{len(kill['files']['staged_files_left'])} staged files left); of its "
            f"{kill.get('workers', 0)} tool workers, {kill.get('workers_outlived_replica', 0)} still ran "
            "after the probes (and were ended).",
        ]
    rolling = results.get("rolling")
    if rolling:
        failed = sum(rolling["failed"].values())
        drains = ", ".join(f"{s:.1f} s" for s in rolling["drain_seconds"])
        lines.append(
            f"- **Rolling restart** (SIGTERM, drain, start, /readyz; replica 1 then 2): {failed} failed "
            f"requests ({rolling.get('failed_by_method') or rolling['failed'] or 'none'}): "
            f"{goal(failed == 0)}; drains took {drains}; "
            f'{rolling["resent"]} requests answered "shutting down" were sent again on a new connection.'
        )
    model = results.get("model")
    if model:
        tools_failed = sum(sum(v.values()) for v in model["tools_failed"].values())
        codes = model["down_runs_failed"]
        documented = set(codes) <= {"error:-32010"}
        back_ok = int(model["back_runs"].get("n", 0) - model["back_runs"].get("errors", 0))
        lines.append(
            "- **Model server killed and restarted**: runs while it was down failed with "
            f"{codes or 'nothing'} "
            f"({model['down_runs_ok']} succeeded: the daemon's retries outlasted the outage): "
            f"{goal(documented)} (-32010 only); tool requests failed: "
            f"{tools_failed}: {goal(tools_failed == 0)}; once it was back, {back_ok} runs succeeded and "
            f"{sum(model['back_runs_failed'].values())} failed: {goal(back_ok > 0)}."
        )
    return lines


def soak_lines(results: dict[str, Any]) -> list[str]:
    soak = results.get("soak")
    if not soak:
        return ["No soak in this run (`make load SOAK=600` runs one: 10 minutes at 50 sessions)."]
    lines = [f"Soak of {soak['seconds']:.0f} s at 50 sessions, RSS every 10 s, 60 s warm-up:"]
    for name, verdict in soak["memory"].items():
        if "error" in verdict:
            lines.append(f"- {name}: {verdict['error']}")
            continue
        lines.append(
            f"- {name}: first minute {verdict['first_minute_mean'] / MIB:.1f} MiB, last minute "
            f"{verdict['last_minute_mean'] / MIB:.1f} MiB ({100 * verdict['change']:+.1f}%): "
            f"{goal(bool(verdict['flat']))} (within 10%)"
        )
    return lines


def capacity_lines(capacity: dict[str, Any]) -> list[str]:
    two, one = capacity["2"]["rps"], capacity["1"]["rps"]
    lines = [
        f"Capacity (50 sessions, no think time, tools only): 2 replicas {two:.0f} req/s, 1 replica "
        f"{one:.0f} req/s: {two / one if one else 0:.2f}x. With PIN=1 each replica has a core of its "
        "own, but the load generator, the balancer and the model server run on the same two cores, "
        "so this is a floor of what a core of its own per replica gives.",
        "",
    ]
    shares = capacity["2"].get("cpu_share")
    if shares:
        names = sorted(shares)
        lines += [
            "| replicas | " + " | ".join(f"CPU {n}" for n in names) + " |",
            "| ---: |" + " ---: |" * len(names),
        ]
        for key in ("2", "1"):
            row = capacity[key].get("cpu_share", {})
            lines.append(f"| {key} | " + " | ".join(f"{100 * row.get(n, 0):.1f}%" for n in names) + " |")
        lines.append("")
    return lines


def projection_lines(results: dict[str, Any]) -> list[str]:
    p = results["projection"]
    return [
        *capacity_lines(results["capacity"]),
        f"Saturated (the capacity phase with 2 replicas), a request cost the replicas "
        f"{p['cpu_ms_per_request']:.2f} ms of CPU (tool workers included) and the balancer "
        f"{p['balancer_cpu_ms_per_request']:.3f} ms. At {p['level']} sessions (think time), a session made "
        f"{p['requests_per_second_per_session']:.2f} requests/s, and the replicas' CPU over the requests "
        f"was {p.get('level_cpu_ms_per_request', 0):.2f} ms each: fixed costs (idle workers, streaming "
        "runs) spread over fewer requests.",
        "",
        f"{p['replicas']} replicas, each on a core of its own planned at 70% busy: "
        f"{p['replicas']} * 0.7 / {p['cpu_ms_per_request'] / 1000:.5f} s = "
        f"**{p['requests_per_second']:.0f} requests/s**, i.e. "
        f"{p['requests_per_second']:.0f} / {p['requests_per_second_per_session']:.2f} = "
        f"**{p['sessions']:.0f} sessions** like these; the balancer would need "
        f"{p['balancer_cores']:.2f} cores for it. Agent runs are the model server's, not the replicas': "
        f"{p['runs_in_level']} runs in that level, the model server used "
        f"{p['model_cpu_seconds']:.0f} CPU-seconds.",
    ]


def render_markdown(results: dict[str, Any]) -> str:
    options, levels = results["options"], results["levels"]
    r = results["ratio"]
    ratio_text = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
    errors = errors_total(levels)
    lines = [
        "# Load results",
        "",
        f"Run {results['started']} on {results['machine']['cpus']} cores by `make load` "
        f"(`python -m bench.load`): {options['seconds']:.0f} s per level, think time "
        f"{options['think'][0]:g}-{options['think'][1]:g} s, replicas pinned: "
        f"{'yes' if options['pin'] else 'no'}, {options['runs_in_flight']} agent runs in flight at most, "
        f"model server threads {options['model_threads']}, niceness {options.get('model_nice', 0)}.",
        "",
        "## Goals",
        "",
        f"- Steady-state errors: {errors}: {goal(errors == 0)}.",
        f"- `tools/invoke` p99 at {r['to']} sessions / p50 at {r['from']} session(s): {ms(r['p99'])} / "
        f"{ms(r['p50'])} ms = {ratio_text}: "
        f"{goal(r['ratio'] is not None and r['ratio'] <= RATIO_GOAL)} (≤ 5).",
        *fault_lines(results),
        "",
        "## Latency and throughput per level",
        "",
        *level_table(levels),
        "",
        "## CPU share (of all cores, over each level) and peak RSS",
        "",
        "`replicaN_tree` is the replica with its tool workers.",
        "",
        *resources_table(levels),
        "",
        "## Soak",
        "",
        *soak_lines(results),
        "",
        "## Scaling and a projection to 10 replicas",
        "",
        *projection_lines(results),
        "",
        "## Client counters",
        "",
        "```json",
        _json(results["counters"]),
        "```",
        "",
        "## What was simulated",
        "",
        "Everything ran on one machine over loopback: the replicas, HAProxy, the model server and the "
        "load generator share its cores (the CPU shares above say how much each took), so latency "
        "includes that contention and the network is free. The model server is llama-cpp-python's, "
        "which decodes one request at a time; the load generator therefore keeps only a few runs in "
        "flight. A real cluster adds a network hop per request, nodes of their own for the balancer and "
        "the load generator, and a batching model server (llama-server `--parallel`, vLLM) on a GPU; a "
        "10-node run needs a load generator on machines of its own (Locust's distributed mode) so that it "
        "is not the bottleneck, and the projection above assumes a replica's cost per request stays as "
        "measured here.",
        "",
    ]
    return "\n".join(lines)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)


def render_plot(results: dict[str, Any], path: Path) -> None:
    """p50 and p99 against concurrent sessions, per request kind (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    counts = sorted(int(k) for k in levels)
    figure, axis = plt.subplots(figsize=(8, 5))
    for name in [m for m in METHOD_ORDER if m not in ("all", "tools/invoke")]:
        points = [(n, levels[str(n)]["methods"].get(name, {})) for n in counts]
        points = [(n, row) for n, row in points if "p50" in row]
        if not points:
            continue
        line = axis.plot(
            [n for n, _ in points], [row["p50"] for _, row in points], marker="o", label=f"{name} p50"
        )
        axis.plot(
            [n for n, _ in points],
            [row["p99"] for _, row in points],
            marker="x",
            linestyle="--",
            color=line[0].get_color(),
            label=f"{name} p99",
        )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("concurrent sessions")
    axis.set_ylabel("latency (ms)")
    axis.set_title("Latency against concurrency (2 replicas behind HAProxy)")
    axis.legend(fontsize="small", ncol=2)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
