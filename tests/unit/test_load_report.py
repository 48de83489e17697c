"""The load run's arithmetic and report (bench/load/stats.py, report.py), on made-up figures: the
load run itself is `make load`'s, never the tests'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.load.report import render_markdown, render_plot
from bench.load.stats import (
    Sample,
    cpu_seconds,
    failures,
    memory_flat,
    method_summary,
    percentile,
    phase_summary,
    projection,
    rss_bytes,
)


def test_percentile_is_the_nearest_rank() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # 1..100, unordered
    assert percentile(samples, 0.50) == 50
    assert percentile(samples, 0.95) == 95
    assert percentile(samples, 0.99) == 99
    assert percentile(samples, 1.0) == 100
    assert percentile([7.0], 0.99) == 7


def test_percentile_refuses_nothing_and_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def sample(
    method: str, ms: float, failure: str | None = None, code: int | None = None, phase: str = "p"
) -> Sample:
    return Sample(phase, method, 0.0, ms, failure, code)


def test_latency_counts_answers_and_errors_count_everything() -> None:
    rows = [sample("echo", 10.0), sample("echo", 20.0), sample("echo", 5000.0, "no-answer")]
    summary = method_summary(rows, seconds=2.0)
    assert summary["n"] == 3 and summary["errors"] == 1
    assert summary["rps"] == 1.5
    assert summary["p99"] == 20.0  # the request given up on is not a latency


def test_a_phase_is_summarised_per_method_per_group_and_in_all() -> None:
    rows = [
        sample("tools/invoke echo", 1.0),
        sample("tools/invoke calc", 3.0),
        sample("tools/list", 2.0),
        sample("tools/list", 99.0, phase="other"),
    ]
    table = phase_summary(rows, "p", 1.0, groups={"tools/invoke": "tools/invoke "})
    assert set(table) == {"tools/invoke echo", "tools/invoke calc", "tools/list", "tools/invoke", "all"}
    assert table["tools/invoke"]["n"] == 2 and table["tools/invoke"]["p99"] == 3.0
    assert table["all"]["n"] == 3


def test_failures_are_counted_by_kind_and_code() -> None:
    rows = [
        sample("agent/run", 1, "error", -32010),
        sample("agent/run", 1, "error", -32010),
        sample("tools/list", 1, "no-answer"),
        sample("tools/list", 1),
        sample("agent/run", 1, "error", -32010, phase="other"),
    ]
    assert failures(rows, "p") == {"error:-32010": 2, "no-answer": 1}
    assert failures(rows, "p", ["tools/list"]) == {"no-answer": 1}


def test_cpu_seconds_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S"] + ["0"] * 10 + ["250", "50", "100", "30"] + ["0"] * 30
    line = "1234 (a (weird) name) " + " ".join(fields)
    assert cpu_seconds(line) == 3.0
    assert cpu_seconds(line, children=True) == 4.3


def test_rss_is_read_in_bytes() -> None:
    assert rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\nVmSwap:\t0 kB\n") == 2 * 1024 * 1024
    assert rss_bytes("Name:\tzombie\n") == 0


def test_memory_is_flat_within_ten_percent_after_the_warm_up() -> None:
    growing = [(t, 100.0 + (200.0 if t < 60 else 0) + t / 10) for t in range(0, 600, 10)]
    verdict = memory_flat(growing)
    assert verdict["first_minute_mean"] == pytest.approx(100 + 8.5)  # samples at 60..110 s
    assert verdict["flat"] is False  # 100 + ~56 at the end: +44%
    steady = [(float(t), 100.0 + (t % 20) / 10) for t in range(0, 600, 10)]
    assert memory_flat(steady)["flat"] is True


def test_memory_flat_needs_a_long_enough_soak() -> None:
    with pytest.raises(ValueError):
        memory_flat([(0.0, 1.0), (30.0, 1.0)])


def test_projection_arithmetic() -> None:
    # 2 ms of a replica's CPU a request, 0.5 ms of the balancer's; a session makes 0.5 requests/s.
    p = projection(0.002, 0.0005, 0.5, replicas=10)
    assert p["cpu_ms_per_request"] == pytest.approx(2.0)
    assert p["requests_per_second"] == pytest.approx(10 * 0.7 / 0.002)
    assert p["requests_per_second_per_session"] == pytest.approx(0.5)
    assert p["sessions"] == pytest.approx(3500 / 0.5)
    assert p["balancer_cores"] == pytest.approx(3500 * 0.0005)


def level(p50: float, p99: float, errors: int) -> dict[str, Any]:
    row = {"n": 100, "errors": errors, "rps": 10.0, "p50": p50, "p95": p99, "p99": p99}
    return {
        "sessions": 1,
        "seconds": 10.0,
        "methods": {"tools/invoke": row, "tools/invoke echo": row, "all": row},
        "cpu_share": {"balancer": 0.01, "loadgen": 0.2, "replica1": 0.3},
        "rss": {"replica1": 80 * 1024 * 1024},
        "cpu": {},
    }


def results(p99_at_top: float, kill_failed: int) -> dict[str, Any]:
    return {
        "started": "now",
        "options": {
            "seconds": 10.0,
            "think": [1.0, 3.0],
            "pin": True,
            "runs_in_flight": 2,
            "model_threads": 1,
        },
        "machine": {"cpus": 2},
        "levels": {"1": level(4.0, 6.0, 0), "200": level(9.0, p99_at_top, 0)},
        "counters": {"resent": 0},
        "capacity": {"1": {"rps": 100.0}, "2": {"rps": 180.0}},
        "ratio": {"from": 1, "to": 200, "p50": 4.0, "p99": p99_at_top, "ratio": p99_at_top / 4.0},
        "projection": {
            "level": 200,
            "replicas": 10,
            "cpu_ms_per_request": 2.0,
            "balancer_cpu_ms_per_request": 0.1,
            "requests_per_second_per_session": 0.5,
            "requests_per_second": 3500.0,
            "sessions": 7000.0,
            "balancer_cores": 0.35,
            "runs_in_level": 3,
            "model_cpu_seconds": 12.0,
            "level_cpu_ms_per_request": 8.0,
        },
        "kill": {
            "failed": {"no-answer": kill_failed} if kill_failed else {},
            "lost_in_flight": 2,
            "served_by_other_after_s": 0.4,
            "probes": 100,
            "probes_failed": 3,
            "files": {"intact": True, "grants_files": [], "staged_files_left": []},
        },
    }


def test_the_report_marks_each_goal_met_or_missed() -> None:
    good = render_markdown(results(p99_at_top=16.0, kill_failed=2))
    assert "16.0 / 4.0 ms = 4.00: met" in good
    assert "2 failed requests" in good and "(failed ≤ in flight)" in good
    assert "**missed**" not in good
    bad = render_markdown(results(p99_at_top=40.0, kill_failed=3))
    assert "= 10.00: **missed**" in bad
    assert "3 failed requests ({'no-answer': 3}), 2 in flight" in bad


def test_the_report_shows_the_projection_arithmetic() -> None:
    text = render_markdown(results(16.0, 0))
    assert "10 * 0.7 / 0.00200 s = **3500 requests/s**" in text
    assert "3500 / 0.50 = **7000 sessions**" in text
    assert "2 replicas 180 req/s, 1 replica 100 req/s: 1.80x" in text


def test_the_plot_is_written(tmp_path: Path) -> None:
    target = tmp_path / "latency.png"
    render_plot(results(16.0, 0), target)
    assert target.read_bytes().startswith(b"\x89PNG")
