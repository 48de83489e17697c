"""The load run: levels of concurrent sessions, capacity with 2 replicas and with 1, the faults, an
optional soak; then bench/load/results.json, RESULTS.md and latency.png.

Locust runs in this process (its programmatic API: an Environment and a local runner), so the
orchestration is gevent greenlets too: the processes are started, killed and sampled between the
users' requests. Environment variables (all optional):

| variable | default | what |
| --- | --- | --- |
| LOAD_LEVELS | 1,10,50,200 | concurrent sessions, one phase each (the first should be 1: the baseline) |
| LOAD_SECONDS | 40 | the measured seconds of each level, capacity phase and fault |
| THINK | 1-3 | a session's pause between requests, seconds (uniform) |
| PIN | 0 | 1: replica N on core N-1 (taskset) |
| FAULTS | 1 | 0: no faults |
| SOAK | 0 | seconds of a soak at 50 sessions after the rest (RSS every 10 s) |
| MODEL_THREADS | 1 | llama_cpp.server's threads |
| MODEL_NICE | 0 | llama_cpp.server's niceness (0: the replicas' priority; see processes.model_server) |
| RUNS_IN_FLIGHT | 2 | agent runs the load generator keeps in flight at most |
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import httpx
from llama_agent.config import REPO_ROOT
from locust.env import Environment

from bench.load import locustfile
from bench.load.client import Closed, NoAnswer, Refused, RpcSession
from bench.load.processes import Cluster, check_files, snapshot_files, start_cluster
from bench.load.report import render_markdown, render_plot
from bench.load.stats import (
    Sample,
    descendants,
    failures,
    memory_flat,
    phase_summary,
    projection,
    ratio,
    read_cpu_seconds,
    read_rss,
    tree_cpu_seconds,
    tree_rss,
)

HERE = Path(__file__).parent
FAULT_SESSIONS = 50
SETTLE_SECONDS = 3.0
BALANCER_NOTICE_SECONDS = 3.0  # a restarted replica's health checks passing (see deploy/haproxy.cfg)
PROBE_INTERVAL = 0.1
BASELINE_SECONDS = 60.0


@dataclass
class Options:
    levels: list[int]
    seconds: float
    think: tuple[float, float]
    pin: bool
    faults: bool
    soak: float
    model_threads: int
    runs_in_flight: int
    model_nice: int = 0

    @classmethod
    def from_env(cls) -> Options:
        low, _, high = os.environ.get("THINK", "1-3").partition("-")
        return cls(
            levels=[int(n) for n in os.environ.get("LOAD_LEVELS", "1,10,50,200").split(",") if n.strip()],
            seconds=float(os.environ.get("LOAD_SECONDS", "40")),
            think=(float(low), float(high or low)),
            pin=os.environ.get("PIN", "0") == "1",
            faults=os.environ.get("FAULTS", "1") != "0",
            soak=float(os.environ.get("SOAK", "0") or 0),
            model_threads=int(os.environ.get("MODEL_THREADS", "1")),
            runs_in_flight=int(os.environ.get("RUNS_IN_FLIGHT", "2")),
            model_nice=int(os.environ.get("MODEL_NICE", "0")),
        )


@dataclass
class Recorder:
    """Every request the users made, and the named phases (time intervals) they fall in: a request
    belongs to the phase during which it was sent."""

    requests: list[tuple[str, float, float, str | None, int | None]] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)

    def on_request(
        self, name: str, response_time: float, context: dict[str, Any], start_time: float, **_: Any
    ) -> None:
        self.requests.append((name, start_time, response_time, context.get("failure"), context.get("code")))

    def phase(self, name: str, seconds: float) -> float:
        """Record a phase of `seconds`; its length."""
        started = time.time()
        gevent.sleep(seconds)
        self.phases.append((name, started, time.time()))
        return time.time() - started

    def open_phase(self, name: str) -> float:
        self.phases.append((name, time.time(), float("inf")))
        return time.time()

    def close_phase(self, name: str) -> float:
        for index, (phase, started, _) in enumerate(self.phases):
            if phase == name:
                self.phases[index] = (phase, started, time.time())
                return time.time() - started
        raise KeyError(name)

    def samples(self) -> list[Sample]:
        found = []
        for name, start, ms, failure, code in self.requests:
            for phase, begun, ended in self.phases:
                if begun <= start < ended:
                    found.append(Sample(phase, name, start, ms, failure, code))
        return found


class Cpu:
    """CPU seconds of the processes that share the cores, read from /proc at a phase's edges."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def read(self) -> dict[str, float]:
        procs = {"balancer": self.cluster.balancer, "model": self.cluster.model}
        procs |= {proc.name: proc for proc in self.cluster.replicas}
        found = {"loadgen": read_cpu_seconds(os.getpid()) or 0.0, "wall": time.monotonic()}
        for name, proc in procs.items():
            found[name] = (tree_cpu_seconds(proc.pid) or 0.0) if proc.alive() else 0.0
        return found

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


def sample_memory(cluster: Cluster, recorder: Recorder, every: float) -> None:
    while True:
        row: dict[str, Any] = {"t": time.time()}
        for proc in [*cluster.replicas, cluster.balancer, cluster.model]:
            if proc.alive():
                row[proc.name] = read_rss(proc.pid)
                if proc.name.startswith("replica"):
                    row[f"{proc.name}_tree"] = tree_rss(proc.pid)
        recorder.rss.append(row)
        gevent.sleep(every)


def set_users(runner: Any, count: int) -> None:
    """Start or stop users until `count` run, then let them settle."""
    runner.start(count, spawn_rate=max(1.0, count / 5))
    deadline = time.monotonic() + 60
    while runner.user_count != count and time.monotonic() < deadline:
        gevent.sleep(0.2)
    gevent.sleep(SETTLE_SECONDS)


def rebalance(runner: Any, count: int) -> None:
    """Every session closed and opened again, so that the balancer spreads them over the replicas
    as they are now (a WebSocket stays on the replica it opened on: after a restart, one replica
    would hold them all)."""
    runner.stop()
    set_users(runner, count)


def open_sessions(port: int) -> float:
    """The replica's open sessions, from its /metrics (llama_agent_active_sessions, every tenant)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    lines = [line for line in text.splitlines() if line.startswith("llama_agent_active_sessions{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def probe(url: str, token: str) -> bool:
    """A new session through the balancer, initialized, one echo answered."""
    try:
        session = RpcSession(url, token, connect_timeout=2)
    except Refused:
        return False
    try:
        started = session.call("initialize", {"processId": None, "capabilities": {}}, 2)
        echo = session.call("tools/invoke", {"name": "echo", "arguments": {"value": "probe"}}, 2)
        return "result" in started and "result" in echo
    except (Closed, NoAnswer):
        return False
    finally:
        session.close()


def warm_up(cluster: Cluster, token: str) -> None:
    """One session that calls every tool and runs the agent once: models loaded, workers made."""
    session = RpcSession(cluster.url, token)
    try:
        session.call("initialize", {"processId": None, "capabilities": {}}, 60)
        for kind in ("tools/list", "echo", "read_file", "calc", "agent/run"):
            method, _, params, timeout = locustfile.request_for(kind)
            answer = session.call(method, params, timeout)
            if "result" not in answer:
                raise RuntimeError(f"warm-up {kind} failed: {answer}")
    finally:
        session.close()


def run_levels(options: Options, runner: Any, recorder: Recorder, cpu: Cpu) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    for count in options.levels:
        set_users(runner, count)
        before = cpu.read()
        # One session makes a request every 2 s or so: its baseline gets a minute at least.
        length = max(options.seconds, BASELINE_SECONDS) if count == 1 else options.seconds
        seconds = recorder.phase(f"level-{count}", length)
        levels[str(count)] = {"sessions": count, "seconds": seconds, "cpu": Cpu.delta(before, cpu.read())}
        print(f"load: {count} sessions done", flush=True)
    return levels


def run_capacity(
    options: Options, cluster: Cluster, runner: Any, recorder: Recorder, cpu: Cpu
) -> dict[str, Any]:
    """Throughput with no think time and no runs (tools only): 2 replicas, then replica 2 stopped.
    Saturated, the replicas' CPU over the requests is the marginal cost of a call."""
    locustfile.SETTINGS.think = (0.0, 0.0)
    locustfile.SETTINGS.runs = False
    found: dict[str, Any] = {}
    try:
        set_users(runner, FAULT_SESSIONS)
        before = cpu.read()
        found["seconds_2"] = recorder.phase("capacity-2", options.seconds)
        found["cpu_2"] = Cpu.delta(before, cpu.read())
        cluster.replicas[1].stop()
        gevent.sleep(BALANCER_NOTICE_SECONDS)
        before = cpu.read()
        found["seconds_1"] = recorder.phase("capacity-1", options.seconds)
        after = cpu.read()
        found["cpu_1"] = Cpu.delta({**before, "replica2": 0.0}, {**after, "replica2": 0.0})
        cluster.start_replica(1)
        gevent.sleep(BALANCER_NOTICE_SECONDS)
    finally:
        locustfile.SETTINGS.think = options.think
        locustfile.SETTINGS.runs = True
    return found


def fault_kill(options: Options, cluster: Cluster, runner: Any, recorder: Recorder) -> dict[str, Any]:
    """kill -9 of replica 2 mid-load; new sessions probed every 0.1 s from the kill."""
    rebalance(runner, FAULT_SESSIONS)
    files = snapshot_files(cluster.layout)
    lost_before = locustfile.COUNTERS.lost_in_flight
    probes: list[tuple[float, bool]] = []
    recorder.open_phase("kill")
    gevent.sleep(options.seconds / 2)
    sessions = open_sessions(cluster.replica_ports[1])
    workers = descendants(cluster.replicas[1].pid)
    killed_at = time.time()
    cluster.replicas[1].kill()
    deadline = killed_at + max(10.0, options.seconds / 2)
    while time.time() < deadline:
        probes.append((time.time() - killed_at, probe(cluster.url, cluster.layout.tokens[0])))
        gevent.sleep(PROBE_INTERVAL)
    recorder.close_phase("kill")
    failed_probes = [t for t, ok in probes if not ok]
    outlived = end_orphans(workers)
    cluster.start_replica(1)
    gevent.sleep(BALANCER_NOTICE_SECONDS)
    return {
        "killed_at": killed_at,
        "lost_in_flight": locustfile.COUNTERS.lost_in_flight - lost_before,
        "probes": len(probes),
        "probes_failed": len(failed_probes),
        "served_by_other_after_s": (failed_probes[-1] + PROBE_INTERVAL) if failed_probes else 0.0,
        "files": check_files(cluster.layout, files),
        "sessions_on_killed_replica": sessions,
        "workers": len(workers),
        "workers_outlived_replica": outlived,
    }


def end_orphans(pids: list[int]) -> int:
    """The killed replica's tool workers still running (they should end with their parent's
    pipes); ended here so that the run leaves nothing behind."""
    alive = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].startswith("Z"):
            continue  # ended, not yet reaped by whoever adopted it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            alive += 1
    return alive


def fault_rolling(options: Options, cluster: Cluster, runner: Any, recorder: Recorder) -> dict[str, Any]:
    """SIGTERM, drain, start, ready: replica 1, then replica 2, under load."""
    rebalance(runner, FAULT_SESSIONS)
    resent_before = locustfile.COUNTERS.resent
    recorder.open_phase("rolling")
    gevent.sleep(SETTLE_SECONDS)
    drains = []
    for index in range(len(cluster.replicas)):
        drains.append(cluster.replicas[index].stop())
        cluster.start_replica(index)
        gevent.sleep(BALANCER_NOTICE_SECONDS)
    gevent.sleep(SETTLE_SECONDS)
    recorder.close_phase("rolling")
    return {"drain_seconds": drains, "resent": locustfile.COUNTERS.resent - resent_before}


def fault_model(options: Options, cluster: Cluster, runner: Any, recorder: Recorder) -> dict[str, Any]:
    """The model server killed, then started again on the same port."""
    set_users(runner, FAULT_SESSIONS)
    recorder.open_phase("model-down")
    cluster.model.kill()
    gevent.sleep(options.seconds / 2)
    recorder.close_phase("model-down")
    recorder.open_phase("model-restarting")
    cluster.start_model()
    recorder.close_phase("model-restarting")
    back = recorder.phase("model-back", max(options.seconds, 20.0))
    return {"back_seconds": back}


def run_soak(options: Options, runner: Any, recorder: Recorder) -> dict[str, Any]:
    set_users(runner, FAULT_SESSIONS)
    started = time.time()
    seconds = recorder.phase("soak", options.soak)
    rows = [row for row in recorder.rss if row["t"] >= started]
    verdicts: dict[str, Any] = {}
    for name in ("replica1", "replica2"):
        points = [(row["t"] - started, row[name]) for row in rows if name in row]
        try:
            verdicts[name] = memory_flat(points)
        except ValueError as error:
            verdicts[name] = {"error": str(error)}
    return {"seconds": seconds, "memory": verdicts}


def measure(options: Options, root: Path) -> dict[str, Any]:
    cluster = start_cluster(root, options.pin, options.model_threads, options.model_nice)
    environment = Environment(user_classes=[locustfile.LspUser])
    recorder = Recorder()
    events: Any = environment.events  # Locust's event hooks are untyped
    events.request.add_listener(recorder.on_request)
    locustfile.configure(
        locustfile.Settings(cluster.url, cluster.layout.tokens, options.think, options.runs_in_flight)
    )
    runner = environment.create_local_runner()
    sampler = gevent.spawn(sample_memory, cluster, recorder, 10.0 if options.soak else 5.0)
    results: dict[str, Any] = {}
    try:
        warm_up(cluster, cluster.layout.tokens[0])
        cpu = Cpu(cluster)
        results["levels"] = run_levels(options, runner, recorder, cpu)
        results["capacity"] = run_capacity(options, cluster, runner, recorder, cpu)
        if options.faults:
            results["kill"] = fault_kill(options, cluster, runner, recorder)
            results["rolling"] = fault_rolling(options, cluster, runner, recorder)
            results["model"] = fault_model(options, cluster, runner, recorder)
        if options.soak:
            results["soak"] = run_soak(options, runner, recorder)
    finally:
        runner.quit()
        sampler.kill()
        cluster.stop()
    results["counters"] = asdict(locustfile.COUNTERS)
    return summarise(options, results, recorder)


def summarise(options: Options, raw: dict[str, Any], recorder: Recorder) -> dict[str, Any]:
    samples = recorder.samples()
    cores = os.cpu_count() or 1
    levels = {}
    for key, level in raw["levels"].items():
        phase = f"level-{key}"
        table = phase_summary(samples, phase, level["seconds"], groups={"tools/invoke": "tools/invoke "})
        cpu = level["cpu"]
        wall = cpu.pop("wall")
        shares = {name: seconds / (wall * cores) for name, seconds in cpu.items()}
        levels[key] = {**level, "methods": table, "cpu_share": shares, "rss": _rss_in(recorder, phase)}
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "options": asdict(options),
        "machine": {"cpus": cores, "python": platform.python_version()},
        "levels": levels,
        "counters": raw["counters"],
    }
    results["capacity"] = {str(n): _capacity(samples, raw["capacity"], n, cores) for n in (1, 2)}
    results |= _faults(raw, samples)
    if "soak" in raw:
        results["soak"] = raw["soak"]
    results["ratio"] = _ratio(levels)
    results["projection"] = _projection(levels, results["capacity"]["2"])
    return results


def _rss_in(recorder: Recorder, phase: str) -> dict[str, float]:
    bounds = next((b, e) for name, b, e in recorder.phases if name == phase)
    rows = [row for row in recorder.rss if bounds[0] <= row["t"] <= bounds[1]] or recorder.rss[-1:]
    names = {key for row in rows for key in row if key != "t"}
    return {name: max(row.get(name, 0) for row in rows) for name in sorted(names)}


def _faults(raw: dict[str, Any], samples: list[Sample]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for phase in ("kill", "rolling"):
        if phase in raw:
            by_method = {m: failures(samples, phase, [m]) for m in sorted({s.method for s in samples})}
            found[phase] = {
                **raw[phase],
                "failed": failures(samples, phase),
                "failed_by_method": {m: kinds for m, kinds in by_method.items() if kinds},
            }
    if "model" in raw:
        tools = [m for m in {s.method for s in samples} if m != "agent/run"]
        found["model"] = {
            **raw["model"],
            "down_runs_failed": failures(samples, "model-down", ["agent/run"]),
            "down_runs_ok": sum(
                1
                for s in samples
                if s.phase == "model-down" and s.method == "agent/run" and s.failure is None
            ),
            "tools_failed": {
                phase: failures(samples, phase, tools)
                for phase in ("model-down", "model-restarting", "model-back")
            },
            "back_runs": phase_summary(samples, "model-back", raw["model"]["back_seconds"]).get(
                "agent/run", {}
            ),
            "back_runs_failed": failures(samples, "model-back", ["agent/run"]),
        }
    return found


def _ratio(levels: dict[str, Any]) -> dict[str, Any]:
    counts = sorted(int(k) for k in levels)
    low, high = str(counts[0]), str(counts[-1])
    base = levels[low]["methods"].get("tools/invoke", {}).get("p50")
    top = levels[high]["methods"].get("tools/invoke", {}).get("p99")
    return {"from": int(low), "to": int(high), "p50": base, "p99": top, "ratio": ratio(top, base)}


def _capacity(samples: list[Sample], raw: dict[str, Any], replicas: int, cores: int) -> dict[str, Any]:
    summary: dict[str, Any] = phase_summary(samples, f"capacity-{replicas}", raw[f"seconds_{replicas}"])[
        "all"
    ]
    cpu = dict(raw[f"cpu_{replicas}"])
    wall = cpu.pop("wall")
    served = summary["n"] - summary["errors"]
    replica_cpu = sum(seconds for name, seconds in cpu.items() if name.startswith("replica"))
    return {
        **summary,
        "cpu": cpu,
        "cpu_share": {name: seconds / (wall * cores) for name, seconds in cpu.items()},
        "replica_cpu_per_request": replica_cpu / served if served else 0.0,
        "balancer_cpu_per_request": cpu["balancer"] / served if served else 0.0,
    }


def _cost(cpu: dict[str, float], served: float) -> float:
    return sum(seconds for name, seconds in cpu.items() if name.startswith("replica")) / served


def _projection(levels: dict[str, Any], capacity: dict[str, Any]) -> dict[str, Any]:
    """A call's cost from the saturated capacity phase (2 replicas, tools only); a session's request
    rate from the busiest level. The busiest level's own CPU per request is shown beside it: at
    low load a replica's fixed costs (idle workers, run streaming) weigh on few requests."""
    key = max(levels, key=int)
    level = levels[key]
    overall = level["methods"]["all"]
    served = overall["n"] - overall["errors"]
    per_session = overall["n"] / level["seconds"] / int(key)
    cost = capacity["replica_cpu_per_request"]
    return {
        "level": int(key),
        **projection(cost, capacity["balancer_cpu_per_request"], per_session),
        "level_cpu_ms_per_request": 1000 * _cost(level["cpu"], served) if served else 0.0,
        "runs_in_level": int(level["methods"].get("agent/run", {}).get("n", 0)),
        "model_cpu_seconds": level["cpu"]["model"],
    }


def main() -> int:
    options = Options.from_env()
    root = Path(tempfile.mkdtemp(prefix="llama-agent-load-"))
    # SIGTERM to the run ends it like ^C: through the finally blocks, so every process is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        results = measure(options, root)
    finally:
        logs = REPO_ROOT / "build" / "load-logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        for log in root.glob("*.log"):
            shutil.copy2(log, logs / log.name)
        shutil.rmtree(root, ignore_errors=True)
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (HERE / "RESULTS.md").write_text(render_markdown(results))
    render_plot(results, HERE / "latency.png")
    print(f"wrote {HERE / 'RESULTS.md'}, results.json and latency.png", flush=True)
    return 0
