"""The processes of a load run, all on 127.0.0.1: llama-cpp-python's OpenAI-compatible server with
the embedded model, replicas of `llama-agent serve --listen` and HAProxy in front of them, started
from a scratch directory (tenants file, workspaces, grants) and stopped whatever happens.

The replicas are what a deployment runs: `serve --listen --tenants FILE --backend openai
--base-url URL`, the bundled tools, the compile cache the benchmarks already filled (shared by
both), grants files under their own config directory. With PIN, replica N runs under
`taskset -c N-1`: its own core, and its tool workers (its children) on the same one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from llama_agent.config import REPO_ROOT
from llama_agent.runtime.models.llama import default_model_path

from bench.common import BENCH_CACHE_DIR
from tests.model_server import MODEL_ALIAS, free_port

HAPROXY_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"
TENANTS = ("acme", "globex", "initech", "umbrella")
NOTES = "Load-test notes.\n" + "".join(f"line {n}: the quick brown fox\n" for n in range(1, 41))
# Generous limits: the load measures the service, not its quotas.
LIMITS = {
    "max_sessions": 1000,
    "max_concurrent_runs": 8,
    "calls_per_minute": 1_000_000,
    "tokens_per_day": 100_000_000,
}
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
# Compiling the bundled tools into an empty cache: minutes, once a machine.
FILL_TIMEOUT = 1200.0


@dataclass
class Proc:
    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # a ^C to the orchestrator is for it to handle
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM, then SIGKILL after `timeout`; the seconds it took to exit."""
        started = time.monotonic()
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started


@dataclass
class Layout:
    """The run's scratch directory: tenants file, tokens, workspaces, config (grants)."""

    root: Path
    tenants_file: Path
    tokens: list[str]
    workspaces: list[Path]
    config_dir: Path


def make_layout(root: Path) -> Layout:
    tokens, workspaces, tables = [], [], []
    for name in TENANTS:
        token = hashlib.sha256(os.urandom(32)).hexdigest()
        workspace = root / "workspaces" / name
        workspace.mkdir(parents=True)
        (workspace / "notes.txt").write_text(NOTES)
        tokens.append(token)
        workspaces.append(workspace)
        limits = "\n".join(f"{key} = {value}" for key, value in LIMITS.items())
        tables.append(
            f'[[tenant]]\nname = "{name}"\nworkspace_root = "{workspace}"\n'
            f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n[tenant.limits]\n{limits}\n'
        )
    tenants_file = root / "tenants.toml"
    tenants_file.write_text("\n".join(tables))
    config_dir = root / "config"
    config_dir.mkdir()
    return Layout(root, tenants_file, tokens, workspaces, config_dir)


def model_server(root: Path, port: int, threads: int, niceness: int) -> Proc:
    """llama_cpp.server with the embedded model; it decodes one request at a time, so
    `--interrupt_requests False` keeps a new request from cutting the running one off.

    Under `nice -n niceness`: on a cluster the model server has a machine (a GPU) of its own; here
    it shares the two cores with the replicas, and its decode, throughput work that never waits for
    a person, would otherwise take the core from a tool call in the middle of it."""
    model = default_model_path(BENCH_CACHE_DIR)
    command = [
        *(["nice", "-n", str(niceness)] if niceness else []),
        sys.executable,
        *("-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--chat_format", "gemma"),
        *("--n_threads", str(threads), "--interrupt_requests", "False"),
    ]
    return Proc("model", command, root / "model.log")


def llama_agent() -> str:
    return str(Path(sys.executable).parent / "llama-agent")


def cache_read_only_supported() -> bool:
    """Whether this daemon has `--cache-read-only` (a replica's shared, sealed compile cache)."""
    shown = subprocess.run([llama_agent(), "serve", "--help"], capture_output=True, text=True, check=False)
    return "--cache-read-only" in shown.stdout


def replica(
    root: Path, layout: Layout, index: int, port: int, model_url: str, pin: bool, read_only: bool
) -> Proc:
    """A replica reading the cache `seal_cache` made (`read_only`), or one filling the bench's."""
    cache = sealed_cache_dir(root) if read_only else BENCH_CACHE_DIR
    command = [
        llama_agent(),
        *("serve", "--listen", f"127.0.0.1:{port}", "--tenants", str(layout.tenants_file)),
        *("--backend", "openai", "--base-url", model_url, "--max-concurrent-runs", "2"),
        *("--cache-dir", str(cache), "--log-format", "json"),
        *(["--cache-read-only"] if read_only else []),
    ]
    if pin:
        command = ["taskset", "-c", str((index - 1) % (os.cpu_count() or 1)), *command]
    env = {"LLAMA_AGENT_CONFIG_DIR": str(layout.config_dir)}
    return Proc(f"replica{index}", command, root / f"replica{index}.log", env)


def haproxy(root: Path, listen: str, stats: str, replicas: list[str]) -> Proc:
    """HAProxy in the foreground (-db) with the repository's configuration."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    env = {"LISTEN": listen, "STATS": stats, "REPLICA1": replicas[0], "REPLICA2": replicas[1]}
    return Proc("haproxy", [binary, "-db", "-f", str(HAPROXY_CONFIG)], root / "haproxy.log", env)


def wait_http(url: str, proc: Proc, timeout: float = READY_TIMEOUT, status: int | None = 200) -> None:
    """Until `url` answers (with `status`, if given); fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} ended: see {proc.log}")
        try:
            answer = httpx.get(url, timeout=2)
            if status is None or answer.status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url} within {timeout:.0f} s: see {proc.log}")


def wait_port(port: int, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} ended: see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not listening on {port}: see {proc.log}")


@dataclass
class Cluster:
    """Everything the load runs against; `stop` ends whatever was started."""

    layout: Layout
    model: Proc
    model_port: int
    replicas: list[Proc]
    replica_ports: list[int]
    balancer: Proc
    balancer_port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.balancer_port}/lsp"

    def start_model(self) -> None:
        self.model.start()
        wait_http(f"http://127.0.0.1:{self.model_port}/v1/models", self.model, status=None)

    def start_replica(self, index: int) -> None:
        proc = self.replicas[index]
        proc.start()
        wait_http(f"http://127.0.0.1:{self.replica_ports[index]}/readyz", proc)

    def stop(self) -> None:
        for proc in [self.balancer, *self.replicas, self.model]:
            with contextlib.suppress(OSError):
                proc.stop(timeout=10)


def start_cluster(root: Path, pin: bool, model_threads: int, model_nice: int) -> Cluster:
    layout = make_layout(root)
    model_port, balancer_port, stats_port = free_port(), free_port(), free_port()
    replica_ports = [free_port(), free_port()]
    model_url = f"http://127.0.0.1:{model_port}/v1"
    read_only = cache_read_only_supported()
    cluster = Cluster(
        layout,
        model_server(root, model_port, model_threads, model_nice),
        model_port,
        [
            replica(root, layout, i + 1, port, model_url, pin, read_only)
            for i, port in enumerate(replica_ports)
        ],
        replica_ports,
        haproxy(
            root,
            f"127.0.0.1:{balancer_port}",
            f"127.0.0.1:{stats_port}",
            [f"127.0.0.1:{p}" for p in replica_ports],
        ),
        balancer_port,
    )
    try:
        cluster.start_model()
        if read_only:
            fill_cache(root, layout, replica_ports[0], model_url)
            seal_cache(root)
        for index in range(len(cluster.replicas)):
            cluster.start_replica(index)
        cluster.balancer.start()
        wait_port(balancer_port, cluster.balancer)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def fill_cache(root: Path, layout: Layout, port: int, model_url: str) -> None:
    """The bench's compile cache filled by one replica that may write it, before it is sealed for
    the replicas that only read it (`seal_cache`): a deployment's build step, done here."""
    filler = replica(root, layout, 1, port, model_url, pin=False, read_only=False)
    filler.name, filler.log = "cache-filler", root / "cache-filler.log"
    try:
        filler.start()
        wait_http(f"http://127.0.0.1:{port}/readyz", filler, timeout=FILL_TIMEOUT)
    finally:
        filler.stop()


def sealed_cache_dir(root: Path) -> Path:
    return root / "sealed-cache"


def seal_cache(root: Path) -> None:
    """A copy of the filled cache, sealed as an image's build step seals it (`llama-agent tools
    seal`: entries signed with a key pair whose private half is discarded): the replicas read it
    and hold only its public key. A copy, so that the bench's own cache keeps its signing key."""
    sealed = sealed_cache_dir(root)
    sealed.mkdir(mode=0o700)
    shutil.copytree(BENCH_CACHE_DIR / "components", sealed / "components")
    shutil.copy2(BENCH_CACHE_DIR / "signing.key", sealed / "signing.key")
    log = root / "cache-sealer.log"
    with log.open("wb") as output:
        command = [llama_agent(), "tools", "seal", "--cache-dir", str(sealed)]
        subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=True, timeout=FILL_TIMEOUT)


def snapshot_files(layout: Layout) -> dict[str, str]:
    """sha256 of every file under the workspaces and the config directory (grants)."""
    found = {}
    for top in [*layout.workspaces, layout.config_dir]:
        for path in sorted(top.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def check_files(layout: Layout, before: dict[str, str]) -> dict[str, object]:
    """After a kill: the workspace files unchanged, every grants file whole TOML, no staged file
    left behind (an atomic write's temporary)."""
    after = snapshot_files(layout)
    changed = sorted(
        p for p in before if p.startswith(str(layout.root / "workspaces")) and after.get(p) != before[p]
    )
    broken = []
    for path in layout.config_dir.rglob("*.toml"):
        try:
            tomllib.loads(path.read_text())
        except (OSError, ValueError):
            broken.append(str(path))
    staged = sorted(p for p in after if Path(p).name.startswith(".") or ".tmp" in Path(p).name)
    grants = sorted(p for p in after if p.endswith(".toml"))
    return {
        "workspace_files_changed": changed,
        "grants_files": grants,
        "grants_files_broken": broken,
        "staged_files_left": staged,
        "intact": not changed and not broken and not staged,
    }
