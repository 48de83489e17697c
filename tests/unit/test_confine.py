"""Operating-system confinement of worker processes (runtime/wasm/confine.py).

Each confinement is tried in a child process (it cannot be undone), confined by the real
`confine`, with the rules a worker derives from its job (`job_rules`), then made to try what code
that escaped the WebAssembly runtime would (tests/escape.py). Everything here runs as root: only
the confinement can refuse a file.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.policy import DirGrant, Grants
from llama_agent.runtime.wasm import confine
from llama_agent.runtime.wasm.contracts import NativeContract
from llama_agent.runtime.wasm.executor import Sandbox
from llama_agent.runtime.wasm.host import ToolLoadError, WasmHost
from llama_agent.runtime.wasm.messages import (
    PREPARED_BOUND,
    CompiledTool,
    Confinement,
    Failed,
    InvokeJob,
    confinement_key,
    decode_job,
    encode,
)
from llama_agent.runtime.wasm.workers import Worker

from tests.wat_tools import tool_wasm

REPO_ROOT = Path(__file__).resolve().parents[2]

# Decodes the job in argv[1] as a worker does, confines itself for it as a worker does, then
# prints what each escape attempt against the targets in argv[2] came to, and how it is confined.
CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from tests.escape import attempts
from llama_agent.runtime.wasm.confine import confine
from llama_agent.runtime.wasm.messages import decode_job
from llama_agent.runtime.wasm.worker import job_rules

job = decode_job(sys.argv[1].encode())
applied = confine(job_rules(job), job.confinement.mode)
outcome = attempts(json.loads(sys.argv[2]))
print(json.dumps({{**outcome, "applied": applied.summary, "missing": applied.missing}}))
"""

DENIED = "refused: EACCES"


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """A granted directory with a file, and a file beside it (another workspace, say)."""
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "inside.txt").write_text("granted")
    other = tmp_path / "other-workspace"
    other.mkdir()
    (other / "secret.txt").write_text("not granted")
    return {
        "granted_dir": str(granted),
        "granted_file": str(granted / "inside.txt"),
        "outside_file": str(other / "secret.txt"),
    }


def job(places: dict[str, str], mode: confine.Mode, writable: bool = False) -> InvokeJob:
    tool = CompiledTool("/nonexistent.cwasm", "0" * 64, NativeContract("llama-agent:tool/tool@0.2.0"))
    sandbox = Sandbox(Limits(), dirs=((places["granted_dir"], "/data", writable),))
    return InvokeJob(tool, sandbox, {}, confinement=Confinement(mode))


def escape(job: InvokeJob, places: dict[str, str], env: dict[str, str] | None = None) -> dict[str, str]:
    """What the escape attempts come to in a child process confined for `job`."""
    script = CHILD.format(repo=str(REPO_ROOT))
    arguments = [sys.executable, "-c", script, encode(job).decode(), json.dumps(places)]
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    outcome: dict[str, str] = json.loads(done.stdout)
    return outcome


def test_a_confined_worker_reaches_its_grants_and_nothing_else(places: dict[str, str]) -> None:
    outcome = escape(job(places, "best-effort"), places)
    assert outcome["applied"] == "landlock+seccomp" and outcome["missing"] == ""
    assert (outcome["seccomp_mode"], outcome["no_new_privs"]) == ("2", "1")
    assert outcome["read_granted"] == "allowed"
    assert outcome["write_granted"] == DENIED  # granted read-only
    for attempt in ("read_outside", "list_outside", "list_tmp", "list_home", "read_parent_environ"):
        assert outcome[attempt] == DENIED, attempt
    for family in ("inet", "inet6", "netlink", "unix"):
        assert outcome[f"{family}_socket"] == DENIED, family
    assert outcome["run_program"].startswith("refused")
    assert outcome["new_user_namespace"] == "refused: EPERM"
    assert not Path(places["granted_dir"], "escaped.txt").exists()


def test_a_read_write_grant_can_be_written(places: dict[str, str]) -> None:
    outcome = escape(job(places, "required", writable=True), places)
    assert (outcome["write_granted"], outcome["read_outside"]) == ("allowed", DENIED)
    assert Path(places["granted_dir"], "escaped.txt").read_text() == "written from outside the sandbox"


def test_unconfined_the_same_attempts_succeed(places: dict[str, str]) -> None:
    """The control: what the tests above see refused is refused by the confinement alone."""
    outcome = escape(job(places, "off"), places)
    assert outcome["applied"] == "none" and outcome["seccomp_mode"] == "0"
    for attempt in ("read_outside", "list_home", "inet_socket", "run_program", "write_granted"):
        assert outcome[attempt] == "allowed", attempt


def test_without_landlock_best_effort_keeps_seccomp(places: dict[str, str]) -> None:
    """On a kernel without Landlock (simulated): the files are open as without confinement, but
    there are still no sockets and no programs."""
    env = {"PATH": "/usr/bin:/bin", confine.FAKE_NO_LANDLOCK_VARIABLE: "1"}
    outcome = escape(job(places, "best-effort"), places, env)
    assert outcome["applied"] == "seccomp" and outcome["missing"].startswith("Landlock")
    assert outcome["read_outside"] == "allowed"
    assert outcome["inet_socket"] == DENIED and outcome["run_program"] == "refused: EPERM"


def test_without_landlock_required_confinement_refuses(places: dict[str, str]) -> None:
    env = {"PATH": "/usr/bin:/bin", confine.FAKE_NO_LANDLOCK_VARIABLE: "1"}
    script = CHILD.format(repo=str(REPO_ROOT))
    invoke = job(places, "required")
    arguments = [sys.executable, "-c", script, encode(invoke).decode(), json.dumps(places)]
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode != 0
    assert "ConfinementError: confinement is required, but this system lacks Landlock" in done.stderr


def test_confining_with_a_thread_running_is_refused() -> None:
    """Landlock would bind the calling thread alone: the worker confines itself before any starts."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(confine.ConfinementError, match="before any thread starts"):
            confine.confine([], "best-effort")
    finally:
        stop.set()
        thread.join()


def test_a_missing_landlock_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(confine.FAKE_NO_LANDLOCK_VARIABLE, "1")
    monkeypatch.setattr(confine, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=confine.__name__):
        confine.warn_if_unavailable("best-effort")
        confine.warn_if_unavailable("best-effort")
    assert [record.getMessage() for record in caplog.records] == [
        "worker confinement: this system lacks Landlock (the kernel has none, or it is turned off); "
        "workers run without it"
    ]


def test_the_kernel_here_offers_landlock() -> None:
    """The machines these tests run on have Landlock (ABI 7 on Linux 6.18): the tests above do
    test it, rather than the degraded path."""
    assert confine.landlock_abi() >= 1 and confine.seccomp_supported()


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(confine.MODE_VARIABLE, raising=False)
    assert confine.mode_from_environment() == "best-effort"
    monkeypatch.setenv(confine.MODE_VARIABLE, "required")
    assert confine.mode_from_environment() == "required"
    monkeypatch.setenv(confine.MODE_VARIABLE, "strict")
    with pytest.raises(ValueError, match="must be one of required, best-effort, off"):
        confine.mode_from_environment()


def test_jobs_carry_their_confinement_and_workers_are_keyed_by_it(places: dict[str, str]) -> None:
    read_only, read_write = job(places, "best-effort"), job(places, "best-effort", writable=True)
    assert decode_job(encode(read_only)) == read_only
    assert confinement_key(decode_job(encode(read_only))) == confinement_key(read_only)
    assert confinement_key(read_only) != confinement_key(read_write)
    # Unconfined workers all serve alike, whatever the grants.
    assert confinement_key(job(places, "off")) == confinement_key(job(places, "off", writable=True))


def required_host(tmp_path: Path) -> WasmHost:
    limits = Limits(timeout_seconds=2)
    return WasmHost(tmp_path / "cache", limits, max_parallel_calls=1, confinement="required")


def test_required_confinement_without_landlock_fails_calls_through_the_host(
    tmp_path: Path, places: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers inherit the simulated kernel: every job is refused, loading a tool included."""
    monkeypatch.setenv(confine.FAKE_NO_LANDLOCK_VARIABLE, "1")
    host = required_host(tmp_path)
    try:
        with pytest.raises(ToolLoadError, match="confinement is required, but this system lacks Landlock"):
            host.load_bytes(tool_wasm("echo", behaviour="echo"), Path("echo.wasm"))
    finally:
        host.close()


def test_calls_say_how_their_worker_was_confined(tmp_path: Path, places: dict[str, str]) -> None:
    host = required_host(tmp_path)
    try:
        echo = host.load_bytes(tool_wasm("echo", behaviour="echo"), Path("echo.wasm"))
        grants = Grants(Limits(timeout_seconds=2), (DirGrant(Path(places["granted_dir"]), "/data", "ro"),))
        for _ in range(3):  # the first on a fresh worker, the next on the same one, confined already
            result = host.invoke(echo, {"value": "x"}, grants)
            assert (result.text, result.confinement) == ("x", "landlock+seccomp")
        assert host.invoke(echo, {"value": "y"}).confinement == "landlock+seccomp"  # other grants
    finally:
        host.close()


def test_workers_serve_only_calls_under_the_grants_they_are_confined_for(
    tmp_path: Path, places: dict[str, str]
) -> None:
    """Calls under two grant sets, interleaved: each set keeps its own workers (none confined for
    one serves the other), which are reused rather than started again, within the pool's size."""
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=2), max_parallel_calls=2)
    try:
        echo = host.load_bytes(tool_wasm("echo", behaviour="echo"), Path("echo.wasm"))
        granted = Path(places["granted_dir"])
        sets = [
            Grants(Limits(timeout_seconds=2), (DirGrant(granted, "/data", mode),)) for mode in ("ro", "rw")
        ]
        pids_seen: list[set[int]] = []
        for _ in range(3):
            for grants in sets:
                assert host.invoke(echo, {"value": "x"}, grants).text == "x"
            pids_seen.append(set(host.workers.pids()))
        assert pids_seen[1] == pids_seen[2] and len(pids_seen[2]) <= 3  # 2 call slots, 1 for loading
        keys = [worker.confinement for worker in host.workers.idle_workers() if worker.confinement]
        assert len(keys) == len(set(keys))  # one idle worker per confinement
    finally:
        host.close()


def test_a_worker_refuses_a_job_for_another_confinement(places: dict[str, str]) -> None:
    """The pool never sends one; a worker that got one would be out of step: it says so and exits."""
    worker = Worker()
    try:
        first, other = job(places, "best-effort"), job(places, "best-effort", writable=True)
        worker.send(first)  # its component does not exist: the job fails, the worker stays, confined
        assert isinstance(worker.receive(10, PREPARED_BOUND), Failed)
        worker._jobs.send_bytes(encode(other))  # past the pool's own check
        assert worker.receive(10, PREPARED_BOUND) == Failed(
            "a job for another confinement than the worker's", retire=True
        )
        assert worker.process.wait(timeout=5) == 1
    finally:
        worker.kill()
        worker.reap()
