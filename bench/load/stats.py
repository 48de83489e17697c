"""The load run's arithmetic, kept apart from Locust and the processes so that it is unit-tested:
percentiles of recorded samples, per-method summaries, CPU time and memory read from /proc, the
soak's "memory flat" verdict and the projection to more replicas."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Clock ticks per second of /proc/PID/stat's times (sysconf(_SC_CLK_TCK), 100 on Linux).
CLOCK_TICKS = 100
# The soak's verdict: the last minute's mean RSS within this fraction of the first minute's.
FLAT_TOLERANCE = 0.10
# A core is planned at this utilisation, not 100%: headroom for bursts and a replica's restart.
PLANNED_UTILISATION = 0.7


@dataclass(frozen=True)
class Sample:
    """One request as the load generator saw it."""

    phase: str
    method: str
    start: float  # time.time() when sent
    ms: float  # until its answer (or until it was given up)
    failure: str | None  # None: answered with a result; "error": an error answer; "no-answer"
    code: int | None = None  # the error answer's code


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least `fraction` of them at or
    below it (so p99 of 100 samples is the 99th, not an interpolation toward the maximum)."""
    if not samples:
        raise ValueError("no samples")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    ordered = sorted(samples)
    rank = math.ceil(fraction * len(ordered))
    return ordered[max(rank, 1) - 1]


def method_summary(samples: Iterable[Sample], seconds: float) -> dict[str, float]:
    """Latency percentiles of the answered requests, throughput and errors of all of them."""
    chosen = list(samples)
    answered = [s.ms for s in chosen if s.failure is None]
    summary: dict[str, float] = {
        "n": len(chosen),
        "errors": sum(1 for s in chosen if s.failure is not None),
        "rps": len(chosen) / seconds if seconds > 0 else 0.0,
    }
    if answered:
        summary |= {
            "p50": percentile(answered, 0.50),
            "p95": percentile(answered, 0.95),
            "p99": percentile(answered, 0.99),
            "mean": statistics.fmean(answered),
        }
    return summary


def phase_summary(
    samples: Iterable[Sample], phase: str, seconds: float, groups: dict[str, str] | None = None
) -> dict[str, dict[str, float]]:
    """Per method (and "all") summaries of one phase's samples; `groups` adds a summary per
    group name of the methods whose names start with its prefix ("tools/invoke" for every tool)."""
    chosen = [s for s in samples if s.phase == phase]
    methods = sorted({s.method for s in chosen})
    table = {m: method_summary((s for s in chosen if s.method == m), seconds) for m in methods}
    for name, prefix in (groups or {}).items():
        members = [s for s in chosen if s.method.startswith(prefix)]
        if members:
            table[name] = method_summary(members, seconds)
    table["all"] = method_summary(chosen, seconds)
    return table


def failures(samples: Iterable[Sample], phase: str, methods: Iterable[str] | None = None) -> dict[str, int]:
    """Failed requests of a phase by kind: `error:CODE` for an error answer, `no-answer`."""
    wanted = set(methods) if methods is not None else None
    counts: dict[str, int] = {}
    for s in samples:
        if s.phase != phase or s.failure is None or (wanted is not None and s.method not in wanted):
            continue
        key = "no-answer" if s.failure == "no-answer" else f"error:{s.code}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def cpu_seconds(stat_line: str, children: bool = False) -> float:
    """utime + stime (and, with `children`, the waited-for children's) of a /proc/PID/stat line.
    The command name (field 2) may hold spaces and parentheses: fields are counted after its last
    ')'."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def read_cpu_seconds(pid: int, children: bool = False) -> float | None:
    try:
        return cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), children)
    except (OSError, ValueError, IndexError):
        return None  # the process has gone


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process and every descendant still running (a replica's tool workers live
    on between calls: their time reaches the parent's cutime only when they are waited for)."""
    own = read_cpu_seconds(pid, children=True)
    if own is None:
        return None
    return own + sum(read_cpu_seconds(child, children=True) or 0.0 for child in descendants(pid))


def rss_bytes(status_text: str) -> int:
    """VmRSS of a /proc/PID/status text, in bytes (0 for a process without one: a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def read_rss(pid: int) -> int:
    try:
        return rss_bytes(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0


def descendants(pid: int) -> list[int]:
    """The process's children, theirs, and so on (from /proc/PID/task/TID/children)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            pending += kids
    return found


def tree_rss(pid: int) -> int:
    return read_rss(pid) + sum(read_rss(child) for child in descendants(pid))


def memory_flat(
    samples: Sequence[tuple[float, float]], warmup: float = 60.0, window: float = 60.0
) -> dict[str, float | bool]:
    """The soak's verdict from (seconds since start, RSS) samples: the mean of the last `window`
    seconds against the mean of the first `window` seconds after `warmup`."""
    if not samples:
        raise ValueError("no samples")
    end = samples[-1][0]
    first = [rss for t, rss in samples if warmup <= t < warmup + window]
    last = [rss for t, rss in samples if t > end - window]
    if not first or not last:
        raise ValueError("the soak is shorter than its warm-up and two windows")
    first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
    change = (last_mean - first_mean) / first_mean
    return {
        "first_minute_mean": first_mean,
        "last_minute_mean": last_mean,
        "change": change,
        "flat": abs(change) <= FLAT_TOLERANCE,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def projection(
    cpu_seconds_per_request: float,
    balancer_cpu_seconds_per_request: float,
    requests_per_second_per_session: float,
    replicas: int = 10,
) -> dict[str, float]:
    """What `replicas` replicas, each on a core of its own at PLANNED_UTILISATION, would carry, from
    the CPU a request cost a replica (workers included), and the request rate one session made."""
    if cpu_seconds_per_request <= 0 or requests_per_second_per_session <= 0:
        raise ValueError("a projection needs a cost per request and a request rate")
    capacity = replicas * PLANNED_UTILISATION / cpu_seconds_per_request
    return {
        "replicas": replicas,
        "cpu_ms_per_request": cpu_seconds_per_request * 1000,
        "balancer_cpu_ms_per_request": balancer_cpu_seconds_per_request * 1000,
        "requests_per_second_per_session": requests_per_second_per_session,
        "requests_per_second": capacity,
        "sessions": capacity / requests_per_second_per_session,
        "balancer_cores": capacity * balancer_cpu_seconds_per_request,
    }
