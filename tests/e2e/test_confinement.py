"""Workers confined by the operating system, in a real daemon over stdio.

Code that escaped the WebAssembly runtime is simulated by a `sitecustomize` on the workers'
PYTHONPATH (tests/escape.py): inside the worker serving a call, after the call, it tries to read
beside the granted directory, to read the compile cache's signing key, to open sockets, to run a
program; the call's answer says what each attempt came to. The same daemon with confinement off
is the control. Everything here runs as root: only the confinement can refuse a file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.storage.signing import KEY_NAME

from tests.escape import SITECUSTOMIZE
from tests.rpc import DaemonSession, StartDaemon

REPO_ROOT = Path(__file__).resolve().parents[2]
DENIED = "refused: EACCES"


@pytest.fixture
def tools(tmp_path: Path, test_tools: Path) -> Path:
    """A trusted tools directory whose `hostile` tool is granted `data` read-only."""
    directory = tmp_path / "tools"
    directory.mkdir()
    shutil.copy2(test_tools / "hostile.wasm", directory / "hostile.wasm")
    data = tmp_path / "data"
    data.mkdir()
    (data / "inside.txt").write_text("granted content")
    (directory / "hostile.policy.toml").write_text(f'[[dirs]]\nhost = "{data}"\nguest = "/data"\n')
    return directory


# The operator's secret in the daemon's environment (an API key, say): no worker starts with it.
SECRET_VARIABLE = "MODEL_SERVER_API_KEY"


def escaping(tmp_path: Path, cache_dir: Path, mode: str) -> dict[str, str]:
    """The daemon's environment: confinement `mode`, and workers that attempt an escape per call."""
    other = tmp_path / "other-workspace"
    other.mkdir()
    (other / "secret.txt").write_text("another tenant's file")
    site = tmp_path / "site"
    site.mkdir()
    targets = {
        "granted_dir": str(tmp_path / "data"),
        "granted_file": str(tmp_path / "data" / "inside.txt"),
        "outside_file": str(other / "secret.txt"),
        "cache_key": str(cache_dir / KEY_NAME),
        "secret_variable": SECRET_VARIABLE,
    }
    (site / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(repo=str(REPO_ROOT), targets=json.dumps(targets))
    )
    return {"PYTHONPATH": str(site), SECRET_VARIABLE: "sk-operator-secret", "LLAMA_AGENT_CONFINEMENT": mode}


async def call(daemon: DaemonSession) -> dict[str, Any]:
    result: dict[str, Any] = await daemon.request(
        "tools/invoke", {"name": "hostile", "arguments": {"action": "read", "target": "/data/inside.txt"}}
    )
    return result


def status(pid: int) -> dict[str, str]:
    """Process `pid`'s /proc status fields; none if it has ended meanwhile."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


async def test_code_escaped_from_the_runtime_stays_within_the_calls_grants(
    start_daemon: StartDaemon, tools: Path, tmp_path: Path, cache_dir: Path
) -> None:
    assert (cache_dir / KEY_NAME).exists()  # what a forger would want, had it been reachable
    daemon = await start_daemon("--trusted-tools-dir", tools, env=escaping(tmp_path, cache_dir, "required"))
    outcome = json.loads((await call(daemon))["content"][0]["text"])
    assert outcome["read_granted"] == "allowed"
    assert outcome["write_granted"] == DENIED  # granted read-only
    for attempt in ("read_outside", "list_outside", "list_tmp", "list_home", "read_cache_key"):
        assert outcome[attempt] == DENIED, attempt
    assert outcome["read_secret_variable"] == "refused: ENOENT"  # never in a worker's environment
    for family in ("inet", "inet6", "netlink", "unix"):
        assert outcome[f"{family}_socket"] == DENIED, family
    assert outcome["run_program"].startswith("refused") and outcome["new_user_namespace"] == "refused: EPERM"
    assert (outcome["seccomp_mode"], outcome["no_new_privs"]) == ("2", "1")  # the worker that served it
    # Seen from outside too (a worker that has not had a job yet is not confined yet).
    assert any(status(pid).get("Seccomp") == "2" for pid in daemon.worker_pids())


async def test_unconfined_the_same_escape_reaches_everything(
    start_daemon: StartDaemon, tools: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """The control: with confinement off, the attempts refused above succeed."""
    daemon = await start_daemon("--trusted-tools-dir", tools, env=escaping(tmp_path, cache_dir, "off"))
    outcome = json.loads((await call(daemon))["content"][0]["text"])
    for attempt in ("read_outside", "read_cache_key", "list_home", "inet_socket", "run_program"):
        assert outcome[attempt] == "allowed", attempt
    assert outcome["seccomp_mode"] == "0"
    assert b"worker confinement is off" in daemon.stderr


async def test_without_landlock_calls_run_and_the_daemon_warns_once(
    start_daemon: StartDaemon, tools: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """On a kernel without Landlock (simulated, workers included): calls run with seccomp alone."""
    plain = await start_daemon("--trusted-tools-dir", tools, env={"LLAMA_AGENT_FAKE_NO_LANDLOCK": "1"})
    for _ in range(2):
        assert (await call(plain))["content"][0]["text"] == "read: granted content"
    assert bytes(plain.stderr).count(b"worker confinement: this system lacks Landlock") == 1
    env = {**escaping(tmp_path, cache_dir, "best-effort"), "LLAMA_AGENT_FAKE_NO_LANDLOCK": "1"}
    escaped = await start_daemon("--trusted-tools-dir", tools, env=env)
    outcome = json.loads((await call(escaped))["content"][0]["text"])
    assert outcome["read_outside"] == "allowed"  # what Landlock would have refused
    assert (outcome["inet_socket"], outcome["run_program"]) == (DENIED, "refused: EPERM")
    assert outcome["seccomp_mode"] == "2"
