"""A worker process: runs tool calls for the daemon, one at a time, and can be killed at any moment.

Started by workers.py as `python -m llama_agent.runtime.wasm.worker IN_FD OUT_FD`. Jobs and
replies are typed messages (messages.py), one JSON object each on two pipes. Nothing is written
to stdout: fd 1 is pointed at stderr before anything runs, so a stray print can never reach the
daemon's protocol stream.

Per job the worker replies `Started` once the component is loaded (the call's deadline starts
there, in the daemon), then one of `Described`, `Done` or `Failed`; a job marked `loaded` (the
daemon knows this worker has an instance of that tool ready) starts at once, without `Started`.
A call that writes more than its quota gets a `QuotaExceeded` reply and the worker exits at once:
the write cannot be taken back, only stopped. A job the worker cannot read gets a `Failed` that
says it retires, and the worker exits: it is out of step with the daemon.

Every call still gets a fresh store and instance, but after answering a call the worker makes the
next one for that tool while it waits: most of a call to an 18 MB componentize-py component is
instantiating it, and that is then off the caller's time. A `Done` reply says whether it will
(`preparing`); a `Prepared` message follows, listing the tools it has an instance ready for. A
`PrepareJob` asks for such an instance of a tool without a call (the daemon keeps one more ready
on another worker while a call runs).

Before its first job, a worker confines itself by the operating system (confine.py) to that
job's granted directories, the compile cache's entries and its own runtime, with no network and
no way to run programs; it then takes only jobs of the same confinement (`confinement_key`): the
pool hands each job to a worker confined for it, or to a fresh one.

A call leaves its worker as it found it: however it ends (an answer, a trap, its deadline, an
argument that cannot be passed), the store it ran in is closed once it is answered, and with it
its memories and every file the guest held open. Nothing waits for Python's garbage collector.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import resource
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import wasmtime
from wasmtime.component import Component

from llama_agent.runtime.storage.digests import file_sha256
from llama_agent.runtime.wasm.confine import Applied, ConfinementError, Rule, confine, runtime_rules
from llama_agent.runtime.wasm.executor import DescribeFailed, Executor, Invocation, ReadyInstance
from llama_agent.runtime.wasm.messages import (
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
    confinement_key,
    decode_job,
    encode,
)

# Components kept deserialized; each maps its compiled code from the cache file, so the pages are
# shared with every other worker.
MAX_COMPONENTS = 32
# After a call that left the process this big (a tool returned hundreds of megabytes, say), the
# worker exits and the daemon starts a fresh one: a worker's memory never stays high.
RECYCLE_RSS_BYTES = 512 * 1024 * 1024
# Tools (the most recently called) a worker keeps one instance ready for. A ready instance of a
# bundled tool holds under 0.1 MiB resident (wasmtime maps its initial memory copy-on-write).
# LLAMA_AGENT_READY_TOOLS=0 turns this off (the benchmark compares both).
READY_TOOLS = int(os.environ.get("LLAMA_AGENT_READY_TOOLS", "4"))
# How much nicer than the worker the thread that makes instances ahead is: a tenth of a core's
# share against the worker's own priority, all of an idle core.
BACKGROUND_NICE = 10
MAX_NICE = 19
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
QUOTA_EXIT_CODE = 3
QUOTA_POLL_SECONDS = 0.002
PR_SET_PDEATHSIG = 1
# The folder holding the `llama_agent` package (daemon/): a confined worker may read it.
PACKAGE_ROOT = Path(__file__).resolve().parents[3]


class JobError(Exception):
    """A job that cannot be run; the message goes back to the daemon."""


class JobRunner:
    def __init__(
        self, outbox: Connection, applied: Applied, key: Hashable, memory: PeakMemory | None = None
    ) -> None:
        self.outbox = outbox
        self.applied = applied  # how this process is confined
        self.key = key  # the confinement of the jobs it may take (`confinement_key`)
        self.memory = memory or PeakMemory()
        self._sending = threading.Lock()
        self._executor = Executor()
        self._components: OrderedDict[str, Component] = OrderedDict()
        self._ready: OrderedDict[str, ReadyInstance] = OrderedDict()
        self._spent: ReadyInstance | None = None

    def send(self, message: Reply) -> None:
        data = encode(message)
        with self._sending:
            self.outbox.send_bytes(data)

    def handle(self, job: DescribeJob | InvokeJob) -> Described | Done | Failed:
        """Run one job; return the final reply (`Started` and `QuotaExceeded` are sent as they happen)."""
        try:
            component = self._component(job.tool.artifact, job.tool.digest)
        except JobError as error:
            return Failed(str(error))
        if not job.loaded:
            self.send(Started())
        if isinstance(job, DescribeJob):
            return self._describe(component, job)
        return self._invoke(component, job)

    def _describe(self, component: Component, job: DescribeJob) -> Described | Failed:
        try:
            return Described(self._executor.describe(component, job.tool.contract, job.limits))
        except DescribeFailed as error:
            return Failed(str(error))

    def _invoke(self, component: Component, job: InvokeJob) -> Done:
        sandbox, contract, arguments = job.sandbox, job.tool.contract, dict(job.arguments)
        ready = self._ready.pop(job.tool.digest, None)
        if ready is not None and not ready.suits(component, sandbox):
            ready.close()  # made for a call with other grants
            ready = None
        self.memory.reset()
        if not sandbox.writable:
            self._spent = ready if ready is not None else self._executor.prepare(component, sandbox)
            outcome = self._executor.invoke(component, contract, arguments, sandbox, self._spent)
            return Done(self._with_figures(outcome, written=0))
        write_bytes, before = sandbox.limits.write_bytes, bytes_written()
        with file_size_limit(write_bytes), WriteQuota(write_bytes, self):
            # Made inside the quota: a guest may write while it starts.
            self._spent = self._executor.prepare(component, sandbox)
            outcome = self._executor.invoke(component, contract, arguments, sandbox, self._spent)
        # The guest's output is captured in memory: what the process wrote meanwhile is its files.
        return Done(self._with_figures(outcome, written=bytes_written() - before))

    def _with_figures(self, outcome: Invocation, written: int) -> Invocation:
        """The call's outcome with what the sandbox measured of it."""
        return dataclasses.replace(
            outcome,
            confinement=self.applied.summary,
            peak_memory_bytes=self.memory.peak(),
            bytes_written=written,
        )

    def release_spent(self) -> None:
        """Free the instance the last call ran in, its memory and the files it held open, whatever
        refers to it still: a call leaves its worker as it found it. A store takes ~0.15 ms to
        free, so it is done after the reply is sent, not on the caller's time."""
        if self._spent is not None:
            self._spent.close()
            self._spent = None

    def prepare(self, job: PrepareJob) -> Prepared:
        """Load the tool `job` names and make an instance of it for a later call; say which tools
        (digests) have an instance ready."""
        try:
            self._component(job.tool.artifact, job.tool.digest)
        except JobError:
            return Prepared(frozenset(self._ready))  # the call that follows reports why
        return self.prepare_next(job)

    def prepare_next(self, job: InvokeJob | PrepareJob) -> Prepared:
        """Make the next call's instance for the tool `job` called, between jobs; say which tools
        (digests) have an instance ready."""
        self.release_spent()
        component = self._components.get(job.tool.digest)
        # Not with a writable grant: what a guest writes while it starts would escape the call's
        # write quota, which is counted while the call runs.
        if component is not None and READY_TOOLS and not job.sandbox.writable:
            ready = self._executor.prepare(component, job.sandbox)
            if ready is not None:
                self._keep_ready(job.tool.digest, ready)
        return Prepared(frozenset(self._ready))

    def _keep_ready(self, digest: str, ready: ReadyInstance) -> None:
        """Keep `ready` for the next call of the tool `digest`; close those it replaces."""
        replaced = self._ready.pop(digest, None)
        if replaced is not None:
            replaced.close()
        self._ready[digest] = ready
        while len(self._ready) > READY_TOOLS:
            self._ready.popitem(last=False)[1].close()

    def _component(self, artifact: str, digest: str) -> Component:
        """The compiled component in `artifact`, checked against the digest the daemon verified."""
        ready = self._ready.get(digest)
        cached = ready.component if ready is not None else self._components.get(digest)
        if cached is not None:
            self._components.move_to_end(digest)
            return cached
        try:
            fd = os.open(artifact, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as error:
            raise JobError(f"cannot open the compiled component {artifact}: {error.strerror}") from error
        try:
            if file_sha256(fd) != digest:
                raise JobError(f"the compiled component {artifact} changed after it was verified")
            # Through the descriptor just checked: a file renamed over the path meanwhile is not read.
            component = Component.deserialize_file(self._executor.engine, f"/proc/self/fd/{fd}")
        except wasmtime.WasmtimeError as error:
            raise JobError(f"cannot load the compiled component {artifact}: {error}") from error
        finally:
            os.close(fd)
        self._components[digest] = component
        while len(self._components) > MAX_COMPONENTS:
            self._components.popitem(last=False)
        return component


class WriteQuota:
    """Ends the worker when a call has written more than its quota, as counted by the kernel.

    Checked every `QUOTA_POLL_SECONDS` on a thread of its own while the call runs: the guest holds
    no GIL while it runs, so a check is never late by more than that.
    """

    def __init__(self, limit: int, runner: JobRunner) -> None:
        self._limit = limit
        self._runner = runner
        self._start = bytes_written()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="write-quota", daemon=True)

    def __enter__(self) -> WriteQuota:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(QUOTA_POLL_SECONDS):
            written = bytes_written() - self._start
            if written > self._limit:
                self._runner.send(QuotaExceeded(written, self._limit))
                os._exit(QUOTA_EXIT_CODE)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """While it holds, no file can grow past `limit` bytes: writes past it fail with EFBIG."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))


class PeakMemory:
    """The most memory the process held during a call: the kernel's high-water mark of its
    resident set (VmHWM), reset before each call through /proc/self/clear_refs. That file is
    opened when the worker starts, before it confines itself (Landlock lets it read its /proc
    entry, not write it). 0 where the kernel offers neither."""

    def __init__(self) -> None:
        try:
            self._clear_refs: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._clear_refs = None

    def reset(self) -> None:
        if self._clear_refs is not None:
            with contextlib.suppress(OSError):
                os.write(self._clear_refs, b"5")  # 5: reset the peak to what is resident now

    def peak(self) -> int:
        try:
            with open("/proc/self/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0


def bytes_written() -> int:
    """Bytes this process has passed to write calls, files and pipes alike (Linux /proc)."""
    with open("/proc/self/io", "rb") as io:
        for line in io:
            if line.startswith(b"wchar:"):
                return int(line.split()[1])
    return 0


def resident_bytes() -> int:
    """The memory this process holds now. (Not its peak from getrusage: Linux carries the peak of
    the process that started this one across exec, and the daemon's peak includes its model.)"""
    return int(os.pread(_statm(), 128, 0).split()[1]) * PAGE_BYTES


@functools.cache
def _statm() -> int:
    """/proc/self/statm, opened once: reading it again costs a few microseconds, opening it more."""
    return os.open("/proc/self/statm", os.O_RDONLY)


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux applies a thread id's nice value to that
    thread alone). Not the lowest: that could starve it for seconds while a model generates."""
    thread = threading.get_native_id()
    with contextlib.suppress(OSError, AttributeError):
        lowered = min(os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICE, MAX_NICE)
        os.setpriority(os.PRIO_PROCESS, thread, lowered)


def _die_with_the_daemon() -> None:
    """If the daemon dies, so does this worker, even in the middle of a call that never returns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    inbox = Connection(int(argv[1]), writable=False)
    outbox = Connection(int(argv[2]), readable=False)
    os.dup2(2, 1)  # stdout belongs to the daemon's protocol; nothing here may write to it
    parent = os.getppid()
    _die_with_the_daemon()
    if os.getppid() != parent:  # the daemon died before the line above took effect
        return 0
    # The daemon decides when workers stop; a file-size limit must fail the write, not kill us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Outside the terminal's foreground process group, a write to it (stderr) must not stop us.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    job = _next_job(inbox, outbox)
    if isinstance(job, int):
        return job
    memory = PeakMemory()  # before the confinement, which closes /proc/self/clear_refs
    # Confined before any thread starts (the executor's epoch ticker, the background thread).
    try:
        applied = confine(job_rules(job), job.confinement.mode)
    except (ConfinementError, OSError) as error:
        outbox.send_bytes(encode(Failed(f"cannot confine the worker process: {error}", retire=True)))
        return 1
    return _serve(JobRunner(outbox, applied, confinement_key(job), memory), inbox, job)


def _next_job(inbox: Connection, outbox: Connection) -> Job | int:
    """The next job; else the worker's exit code: 0 once the daemon closed the pipe, 1 after a job
    that does not decode (the daemon is told, and replaces this worker: it is out of step)."""
    try:
        return decode_job(inbox.recv_bytes())
    except EOFError:
        return 0
    except MalformedMessage as error:
        outbox.send_bytes(encode(Failed(f"the worker cannot read its job: {error}", retire=True)))
        return 1


def job_rules(job: Job) -> list[Rule]:
    """What the process confined for `job` may reach: its runtime, the readable directories and
    the job's granted ones."""
    dirs = () if isinstance(job, DescribeJob) else job.sandbox.dirs
    granted = [Rule(host, writable) for host, _, writable in dirs]
    return [*runtime_rules(PACKAGE_ROOT), *(Rule(path) for path in job.confinement.readable), *granted]


def _serve(runner: JobRunner, inbox: Connection, first: Job) -> int:
    """Run `first`, then every job that comes, until the pipe closes or the worker retires."""
    # Work done ahead (the next instance, freeing the last) runs on a thread of lower priority, so
    # that it yields the cores to calls, the daemon and its clients, which wait on them.
    background = ThreadPoolExecutor(max_workers=1, initializer=_lower_priority)
    job: Job | int | None = first
    while True:
        job = job or _next_job(inbox, runner.outbox)
        if isinstance(job, int):
            return job
        if confinement_key(job) != runner.key:  # the pool never sends one: out of step with it
            runner.send(Failed("a job for another confinement than the worker's", retire=True))
            return 1
        if isinstance(job, PrepareJob):
            runner.send(background.submit(runner.prepare, job).result())
            job = None
            continue
        reply = runner.handle(job)
        retire = resident_bytes() > RECYCLE_RSS_BYTES
        preparing = isinstance(job, InvokeJob) and isinstance(reply, Done) and not retire and job.prepare
        runner.send(_final(reply, retire, preparing))
        if retire:
            return 0
        if isinstance(job, InvokeJob) and preparing:
            runner.send(background.submit(runner.prepare_next, job).result())
        else:
            runner.release_spent()
        job = None


def _final(reply: Described | Done | Failed, retire: bool, preparing: bool) -> Described | Done | Failed:
    """`reply` saying whether the worker retires after it, and (a call's) whether it prepares."""
    if isinstance(reply, Done):
        return dataclasses.replace(reply, retire=retire, preparing=preparing)
    return dataclasses.replace(reply, retire=retire)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
