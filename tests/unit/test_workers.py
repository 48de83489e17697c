"""The worker pool on tiny WAT components: deadlines, cancels, crashes, the threads that spawn, and
instances made ahead of their calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from llama_agent.runtime.tools.limits import Limits
from llama_agent.runtime.tools.metadata import ParamType, ToolExample, ToolMetadata, ToolParam
from llama_agent.runtime.tools.policy import DirGrant, Grants
from llama_agent.runtime.wasm.contracts import NativeContract
from llama_agent.runtime.wasm.executor import Executor, Invocation, Sandbox
from llama_agent.runtime.wasm.host import LoadedTool, ToolLoadError, WasmHost
from llama_agent.runtime.wasm.messages import (
    PREPARED_BOUND,
    CompiledTool,
    Described,
    DescribeJob,
    Done,
    Failed,
    InvokeJob,
    Job,
    MalformedMessage,
    Prepared,
    PrepareJob,
    QuotaExceeded,
    Reply,
    Started,
    decode_job,
    decode_reply,
    encode,
)
from llama_agent.runtime.wasm.workers import CancelToken, Worker
from wasmtime.component import Component

from tests.wat_tools import tool_wasm


@pytest.fixture
def host(tmp_path: Path) -> Iterator[WasmHost]:
    limits = Limits(timeout_seconds=1)
    made = WasmHost(tmp_path / "cache", limits, max_parallel_calls=2)
    yield made
    made.close()


def load(host: WasmHost, name: str, behaviour: str) -> LoadedTool:
    return host.load_bytes(tool_wasm(name, behaviour=behaviour), Path(f"{name}.wasm"))


def test_workers_outlive_the_thread_that_asked_for_them(host: WasmHost) -> None:
    """A worker dies with the thread that started it: a short-lived caller must not take it along."""
    echo = load(host, "echo", "echo")
    pids: list[int] = []

    def in_a_short_lived_thread() -> None:
        host.invoke(echo, {"value": "a"})
        host.invoke(echo, {"value": "b"})
        pids.extend(host.workers.pids())

    thread = threading.Thread(target=in_a_short_lived_thread)
    thread.start()
    thread.join()
    time.sleep(0.3)
    assert host.invoke(echo, {"value": "c"}).text == "c"
    assert set(pids) <= set(host.workers.pids())  # the same workers, still alive


def test_a_cancel_ends_a_blocked_call_at_once(host: WasmHost) -> None:
    nap = load(host, "nap", "sleep")
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel).start()
    started = time.perf_counter()
    result = host.invoke(nap, {"value": "x"}, cancel=cancel)
    assert time.perf_counter() - started < 0.9  # before the 1 s deadline
    assert (result.is_error, result.text) == (True, "cancelled")


def test_a_cancel_before_the_call_starts_kills_it_on_arrival(host: WasmHost) -> None:
    nap = load(host, "nap", "sleep")
    cancel = CancelToken()
    cancel.cancel()
    assert host.invoke(nap, {"value": "x"}, cancel=cancel).text == "cancelled"


def test_a_worker_killed_from_outside_fails_only_its_call(host: WasmHost) -> None:
    nap, echo = load(host, "nap", "sleep"), load(host, "echo", "echo")
    results = []
    caller = threading.Thread(target=lambda: results.append(host.invoke(nap, {"value": "x"})))
    caller.start()
    deadline = time.monotonic() + 5
    while not host.workers.busy_pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(host.workers.busy_pids()[0], signal.SIGKILL)
    caller.join()
    assert results[0].is_error and "ended by signal 9" in results[0].text
    assert host.invoke(echo, {"value": "next"}).text == "next"


def test_calls_beyond_the_pool_wait_for_a_free_worker(host: WasmHost) -> None:
    """Two workers for calls: a third call runs when one of two blocked calls reaches its deadline."""
    nap, echo = load(host, "nap", "sleep"), load(host, "echo", "echo")
    sleepers = [threading.Thread(target=host.invoke, args=(nap, {"value": "x"})) for _ in range(2)]
    for sleeper in sleepers:
        sleeper.start()
    time.sleep(0.3)
    started = time.perf_counter()
    assert host.invoke(echo, {"value": "x"}).text == "x"
    waited = time.perf_counter() - started
    for sleeper in sleepers:
        sleeper.join()
    assert 0.5 < waited < 3.0  # until a sleeper's deadline (1 s after it started), not longer


def wait_until_ready(host: WasmHost, tool: LoadedTool) -> None:
    deadline = time.monotonic() + 5
    while not any(tool.artifact.sha256 in worker.ready for worker in host.workers.idle_workers()):
        assert time.monotonic() < deadline, "no worker made the next instance"
        time.sleep(0.01)


def test_each_call_gets_a_fresh_instance_made_ahead_of_it(host: WasmHost) -> None:
    fresh = load(host, "fresh", "fresh")
    for _ in range(4):
        result = host.invoke(fresh, {"value": "x"})
        assert (result.is_error, result.text) == (False, "fresh")  # never an instance that ran
        wait_until_ready(host, fresh)


def test_a_ready_instance_gets_the_whole_deadline_from_its_call(host: WasmHost) -> None:
    """Guest time in the same process between making the instance and the call (which advances the
    epoch) does not count against the call."""
    slow, loop = load(host, "slow", "slow"), load(host, "loop", "loop")
    executor = Executor(host.engine)
    spec = Sandbox(Limits(timeout_seconds=1))
    slow_component = Component.deserialize_file(host.engine, str(slow.artifact.path))
    ready = executor.prepare(slow_component, spec)
    assert ready is not None
    loop_component = Component.deserialize_file(host.engine, str(loop.artifact.path))
    assert executor.invoke(loop_component, loop.contract, {"value": "x"}, spec).timed_out  # 1 s of epochs
    started = time.perf_counter()
    result = executor.invoke(slow_component, slow.contract, {"value": "x"}, spec, ready)
    assert result.timed_out and time.perf_counter() - started > 0.9
    executor.close()


def test_a_call_on_a_ready_instance_still_ends_at_its_deadline(host: WasmHost) -> None:
    """A worker with an instance ready starts the call without saying so first: the call's own
    deadline (1 s), not the time allowed for loading a component, bounds it."""
    nap = load(host, "nap", "sleep_if_long")
    assert host.invoke(nap, {"value": "x"}).text == "nap 1.0.0"
    wait_until_ready(host, nap)
    started = time.perf_counter()
    result = host.invoke(nap, {"value": "a long nap"})
    assert result.timed_out and 0.9 < time.perf_counter() - started < 3.0


def test_a_tool_called_again_gets_an_instance_ready_on_a_second_worker(host: WasmHost) -> None:
    """While one worker runs a repeated call, another makes an instance of that tool, so the next
    call does not wait for the first worker's next instance."""
    echo = load(host, "echo", "echo")
    for _ in range(3):
        assert host.invoke(echo, {"value": "x"}).text == "x"
        wait_until_ready(host, echo)
    deadline = time.monotonic() + 5
    while sum(echo.artifact.sha256 in worker.ready for worker in host.workers.idle_workers()) < 2:
        assert time.monotonic() < deadline, "only one worker has an instance ready"
        time.sleep(0.01)


def test_a_call_awaited_on_a_loop_is_cancelled_at_once(host: WasmHost) -> None:
    nap, echo = load(host, "nap", "sleep"), load(host, "echo", "echo")

    async def cancel_a_nap() -> float:
        call = asyncio.ensure_future(
            host.invoke_async(nap, {"value": "x"}, host.default_grants, CancelToken())
        )
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return time.perf_counter() - started

    assert asyncio.run(cancel_a_nap()) < 0.5  # not at the 1 s deadline
    assert host.invoke(echo, {"value": "next"}).text == "next"


def test_a_call_awaited_on_a_loop_ends_at_its_deadline(host: WasmHost) -> None:
    nap = load(host, "nap", "sleep")
    started = time.perf_counter()
    result = asyncio.run(host.invoke_async(nap, {"value": "x"}, host.default_grants, CancelToken()))
    assert result.timed_out and 0.9 < time.perf_counter() - started < 3.0


def test_instances_are_made_ahead_at_a_lower_priority(host: WasmHost) -> None:
    """The thread that makes instances ahead yields the cores to calls and their callers."""
    echo = load(host, "echo", "echo")
    host.invoke(echo, {"value": "x"})
    wait_until_ready(host, echo)
    # The one that ran the call (the pool also keeps a fresh one for other confinements).
    worker = next(idle for idle in host.workers.idle_workers() if idle.ready)
    nice_values = set()
    for task in Path(f"/proc/{worker.pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nice_values.add(int(fields[16]))  # field 19 of stat, counted after the command name
    ours = os.getpriority(os.PRIO_PROCESS, 0)  # the worker's other threads run at the test's
    assert nice_values == {ours, min(ours + 10, 19)}


def test_workers_started_after_the_daemon_held_much_memory_do_not_retire(tmp_path: Path) -> None:
    """A worker leaves after a call that left it over 512 MiB; what the process that started it
    once held (the daemon with its model, whose peak Linux carries across exec) does not count."""
    blob = bytearray(600 * 1024 * 1024)
    blob[::4096] = b"\x01" * len(range(0, len(blob), 4096))  # every page resident, then freed
    del blob
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=1), max_parallel_calls=1)
    try:
        echo = load(host, "echo", "echo")
        first = host.invoke(echo, {"value": "a"})
        pids = set(host.workers.pids())
        for value in ("b", "c"):
            wait_until_ready(host, echo)
            assert host.invoke(echo, {"value": value}).text == value
        assert first.text == "a" and set(host.workers.pids()) == pids  # no worker left or was added
    finally:
        host.close()


def test_workers_share_the_daemons_session_but_not_its_process_group(host: WasmHost) -> None:
    """Outside the process group a terminal's Ctrl-C reaches; inside the session whose share of the
    cores Linux divides by priority (so work done ahead yields to the daemon)."""
    echo = load(host, "echo", "echo")
    host.invoke(echo, {"value": "x"})
    for pid in host.workers.pids():
        assert os.getsid(pid) == os.getsid(0)
        assert os.getpgid(pid) == pid != os.getpgid(0)


# -- a call leaves its worker as it found it ---------------------------------------------------------

PREOPENS = 20  # directories granted to each call below: each is a descriptor while its store lives
MIB = 1024 * 1024


def only_worker(host: WasmHost) -> Worker:
    """The pool's one worker for calls with grants, once it is idle again (it has made the next
    call's instance). The other reads tools' metadata: it is confined without the grants."""
    deadline = time.monotonic() + 5
    while not (idle := [worker for worker in host.workers.idle_workers() if confined_with_grants(worker)]):
        assert time.monotonic() < deadline, "the worker never came back"
        time.sleep(0.01)
    assert len(host.workers.pids()) == 2
    return idle[0]


def confined_with_grants(worker: Worker) -> bool:
    """Whether `worker` is confined for calls with granted directories (`confinement_key`)."""
    return isinstance(worker.confinement, tuple) and bool(worker.confinement[1])


def descriptors(pid: int) -> Counter[str]:
    """What each open descriptor of process `pid` names, counted; not the compiled components it
    keeps loaded (one each, up to 32), which belong to no call."""
    opened: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            opened[os.readlink(fd)] += 1
    return Counter({name: count for name, count in opened.items() if not name.endswith(".cwasm")})


def resident(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("mode", ["ro", "rw"])  # rw: no instance made ahead, the call runs under its quota
def test_a_call_leaves_its_worker_as_it_found_it_however_it_ends(tmp_path: Path, mode: str) -> None:
    """Traps, timeouts, capped output, arguments that cannot be lowered, a describe() that traps: after
    each, the worker holds no descriptor and no memory of that call's (before, each trap kept its
    store, with its open directories and its memory, until Python's garbage collector ran)."""
    granted = (tmp_path / "granted").resolve()
    granted.mkdir()
    host = WasmHost(tmp_path / "cache", Limits(timeout_seconds=1), max_parallel_calls=1)
    grants = Grants(
        Limits(timeout_seconds=0.5, output_bytes=64 * 1024),
        tuple(DirGrant(granted, f"/g{i}", "rw" if mode == "rw" else "ro") for i in range(PREOPENS)),
    )
    try:
        echo = load(host, "echo", "echo")
        assert host.invoke(echo, {"value": "x"}, grants).text == "x"
        worker = only_worker(host)
        others, memory = descriptors(worker.pid), resident(worker.pid)
        others.pop(str(granted), None)
        outcomes: list[tuple[LoadedTool, dict[str, Any], str]] = [
            (load(host, "trap", "trap"), {"value": "x"}, "tool trapped"),
            (load(host, "fill", "fill"), {"value": "x"}, "tool trapped"),
            (load(host, "spin", "loop"), {"value": "x"}, "timed out after 0.5 s: wasm trap: interrupt"),
            (echo, {"value": "y" * 100_000}, ""),  # capped at 64 KiB
            (echo, {"value": None}, "cannot pass the arguments to the tool"),  # not a `value` case
        ]
        for _ in range(3):
            for tool, arguments, expected in outcomes:
                result = host.invoke(tool, arguments, grants)
                assert expected in result.text and (result.is_error or result.truncated), result.text
                after = only_worker(host)
                assert after.pid == worker.pid  # neither replaced nor retired
                opened = descriptors(worker.pid)
                # Only the instances made ahead for the next calls hold the granted directories.
                assert opened.pop(str(granted), 0) == PREOPENS * len(after.ready)
                assert opened == others, f"after {tool.metadata.name}"
                assert resident(worker.pid) < memory + 32 * MIB, f"after {tool.metadata.name}"
            with pytest.raises(ToolLoadError, match="reading metadata failed"):
                load(host, "filler", "fill_describe")
            assert only_worker(host).pid == worker.pid
            assert resident(worker.pid) < memory + 32 * MIB, "after describe() trapped"
        assert host.invoke(echo, {"value": "still works"}, grants).text == "still works"
    finally:
        host.close()


def test_a_guest_that_opens_a_thousand_descriptors_and_traps_leaves_none(
    tmp_path: Path, test_tools: Path, cache_dir: Path
) -> None:
    """The real case: a componentize-py tool opens its granted directory 1,000 times and traps. Before,
    each such call left 1,000 descriptors in the worker, and the worker soon ran out."""
    granted = (tmp_path / "granted").resolve()
    granted.mkdir()
    (granted / "inside.txt").write_text("here")
    host = WasmHost(cache_dir, Limits(timeout_seconds=10), max_parallel_calls=1)
    grants = Grants(
        Limits(timeout_seconds=10),
        (DirGrant(granted, "/data", "ro"),),
    )
    try:
        hostile = host.load(test_tools / "hostile.wasm")
        assert (
            host.invoke(hostile, {"action": "list", "target": "/data"}, grants).text == "listed: inside.txt"
        )
        worker = only_worker(host)
        before = sum(descriptors(worker.pid).values())
        for _ in range(4):
            result = host.invoke(hostile, {"action": "hoard", "target": "1000"}, grants)
            assert result.is_error and "trapping with 1000 descriptors open" in result.text
            assert only_worker(host).pid == worker.pid
            assert sum(descriptors(worker.pid).values()) <= before + 2
        assert (
            host.invoke(hostile, {"action": "list", "target": "/data"}, grants).text == "listed: inside.txt"
        )
    finally:
        host.close()


# -- the messages on the pipes ----------------------------------------------------------------------

TOOL = CompiledTool("/cache/components/echo.cwasm", "a" * 64, NativeContract("llama-agent:tool/tool@0.2.0"))
SANDBOX = Sandbox(Limits(timeout_seconds=2.5), dirs=(("/data", "/d", True),), env=(("LANG", "C.UTF-8"),))
METADATA = ToolMetadata(
    "echo",
    "Echo a value",
    "1.0.0",
    (ToolParam("value", "What to echo", ParamType.NUMBER, False, minimum=0.0, maximum=9.0, default=3),),
    (ToolExample("echo 4", (("value", 4),), "4", "It said 4."),),
)
MESSAGES: list[Job | Reply] = [
    DescribeJob(TOOL, Limits(), loaded=True),
    InvokeJob(TOOL, SANDBOX, {"value": "lone \udc80 surrogate", "n": 3}, prepare=False, loaded=True),
    PrepareJob(TOOL, SANDBOX),
    Started(),
    Described(METADATA, retire=True),
    Done(Invocation("x", False, "out", "err \x00", True, False, 1.5), retire=False, preparing=True),
    Failed("cannot open the compiled component"),
    QuotaExceeded(written=70_000_000, limit=67_108_864),
    Prepared(frozenset({"a" * 64, "b" * 64})),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: type(message).__name__)
def test_every_message_crosses_a_pipe_unchanged(message: Job | Reply) -> None:
    decode = decode_job if isinstance(message, DescribeJob | InvokeJob | PrepareJob) else decode_reply
    assert decode(encode(message)) == message


DONE = json.loads(encode(Done(Invocation("x", False, "", "", False, False, 1.0))))
UNDECODABLE = {
    "not JSON": (b'{"kind": "done", "text": "x', "not JSON"),
    "not an object": (b'["done"]', "a JSON list, not an object"),
    "an unknown kind": (b'{"kind": "hello"}', "a reply of unknown kind 'hello'"),
    "a field of another type": (
        json.dumps({**DONE, "text": None}).encode(),
        "a reply whose 'text' is NoneType, not text",
    ),
    "a field left out": (
        json.dumps({key: value for key, value in DONE.items() if key != "stderr"}).encode(),
        "a reply without its 'stderr'",
    ),
    "a boolean for a count": (b'{"kind": "quota", "written": true, "limit": 1}', "'written' is bool"),
    "metadata that does not decode": (
        b'{"kind": "described", "metadata": {"name": "x"}, "retire": false}',
        "the metadata of a described reply does not decode",
    ),
    "digests that are not text": (b'{"kind": "prepared", "ready": [1]}', "are not all text"),
}


@pytest.mark.parametrize(("data", "problem"), UNDECODABLE.values(), ids=UNDECODABLE)
def test_a_reply_that_does_not_decode_says_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=re.escape(problem)):
        decode_reply(data)


def test_a_job_that_does_not_decode_says_what_is_wrong() -> None:
    job = json.loads(encode(InvokeJob(TOOL, SANDBOX, {})))
    unknown_contract = {"world": "llama-agent:tool/plugin", "interface": "x"}
    changes: list[tuple[dict[str, Any], str]] = [
        ({"limits": {**job["limits"], "cores": 4}}, "a job's limits name 'cores', which is not a limit"),
        ({"contract": unknown_contract}, "not a supported llama-agent:tool interface: 'x'"),
        ({"dirs": [["/data", "/d"]]}, "a granted directory that is not [host, guest, writable]"),
        ({"op": "format"}, "a job of unknown kind 'format'"),
    ]
    for changed, problem in changes:
        with pytest.raises(MalformedMessage, match=re.escape(problem)):
            decode_job(json.dumps({**job, **changed}).encode())


def feed_replies(worker: Worker, *replies: bytes) -> None:
    """Have `worker`'s next replies be `replies`, as if it had written them (what it writes itself
    goes nowhere): its reply pipe is replaced by one written here."""
    read, write = os.pipe()
    worker._replies.close()
    worker._replies = Connection(read, writable=False)

    def write_them() -> None:  # on a thread: a reply larger than the pipe's buffer waits for its reader
        with Connection(write, readable=False) as writer, contextlib.suppress(OSError):
            for reply in replies:
                writer.send_bytes(reply)

    threading.Thread(target=write_them, daemon=True).start()


@pytest.mark.parametrize(
    ("replies", "problem"),
    [
        ([b'{"kind": "started"}', b'{"kind": "done", "text": "x"}'], "sent a reply without its 'is_error'"),
        ([b"\xff\xfe"], "sent not JSON"),
        ([b'{"kind": "prepared", "ready": []}'], "sent Prepared where a job's end was due"),
        ([b'{"kind": "error", "error": "' + b"x" * 200_000 + b'"}'], "sent a reply larger than 83,968 bytes"),
    ],
    ids=["a field missing", "not JSON", "out of turn", "too large"],
)
def test_a_worker_whose_reply_does_not_decode_fails_its_call_and_is_replaced(
    host: WasmHost, replies: list[bytes], problem: str
) -> None:
    echo = load(host, "echo", "echo")
    small = Grants(Limits(timeout_seconds=1, output_bytes=1024))
    assert host.invoke(echo, {"value": "a"}, small).text == "a"
    wait_until_ready(host, echo)
    [worker] = host.workers.idle_workers()
    feed_replies(worker, *replies)
    result = host.invoke(echo, {"value": "b"}, small)
    assert result.is_error and result.text.startswith(f"the call failed: the worker process {problem}")
    assert worker.killed and worker.pid not in host.workers.pids()
    assert host.invoke(echo, {"value": "c"}, small).text == "c"


def test_a_worker_sent_a_job_it_cannot_read_says_so_and_exits() -> None:
    worker = Worker()
    try:
        worker._jobs.send_bytes(b'{"op": "format", "disk": "/dev/sda"}')
        reply = worker.receive(10, PREPARED_BOUND)
        assert reply == Failed("the worker cannot read its job: a job of unknown kind 'format'", retire=True)
        assert worker.process.wait(timeout=5) == 1
    finally:
        worker.kill()
        worker.reap()
