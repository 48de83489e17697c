"""Worker processes that run tool calls, so that a call can be ended wherever it is.

An epoch deadline stops guest code that computes, but not a guest blocked inside a WASI host
call (a sleep, a `pollable.block`): only ending the process that runs it does. Each call runs in
a worker process (worker.py); at its deadline, or when it is cancelled, the worker
is killed and a fresh one takes its place. A worker's memory is its own, so a call that bloats it
never bloats the daemon.

A worker confines itself by the operating system on its first job, for good (confine.py): to
that job's granted directories, whatever they are. It then serves only jobs of the same
confinement (`confinement_key`), so idle workers are kept per confinement as well as per tool; a
fresh worker serves any, and one is kept starting for the next new confinement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

from llama_agent.runtime.telemetry.metrics import worker_restart
from llama_agent.runtime.wasm.messages import (
    PREPARED_BOUND,
    Cancelled,
    Crashed,
    Described,
    DescribeJob,
    Done,
    Failed,
    InvokeJob,
    Job,
    MalformedMessage,
    Outcome,
    Prepared,
    PrepareJob,
    Reply,
    Started,
    TimedOut,
    confinement_key,
    decode_reply,
    encode,
    reply_bound,
)

log = logging.getLogger(__name__)

# The folder holding the `llama_agent` package (daemon/), for the worker processes' imports.
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
# Loading a compiled component into a worker (mapping up to 128 MiB of code) is not part of a
# call's time; this bounds it separately.
LOAD_SECONDS = 60.0
# A computing guest is interrupted by its epoch deadline and answers by itself; the worker is
# killed only if it has not answered this long after the deadline.
KILL_GRACE_SECONDS = 0.2
# After a call, a worker makes the next instance of that tool (worker.py) before it takes another
# job; one that takes longer than this (a guest blocked while it starts) is replaced.
PREPARE_SECONDS = 1.0
# The variables a worker process keeps from the daemon's environment (see `worker_environment`).
WORKER_ENVIRONMENT = frozenset(
    {
        "PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "TMPDIR", "XDG_RUNTIME_DIR",
        "LLAMA_AGENT_READY_TOOLS", "LLAMA_AGENT_CONFINEMENT", "LLAMA_AGENT_FAKE_NO_LANDLOCK",
        "LLAMA_AGENT_CACHE_DIR", "LLAMA_AGENT_CONFIG_DIR",
    }
)  # fmt: skip
WORKER_ENVIRONMENT_PREFIXES = ("LC_", "PYTHON")


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a worker process starts with: what Python and the worker read, nothing else. The
    daemon's environment may hold secrets (a model server's API key, a collector's token) that
    guest code escaping the runtime must not find; a call's granted variables travel in its job."""
    return {
        name: value
        for name, value in environ.items()
        if name in WORKER_ENVIRONMENT or name.startswith(WORKER_ENVIRONMENT_PREFIXES)
    }


class WorkerGone(Exception):
    """The worker process ended or was killed."""


class Worker:
    """One worker process and the two pipes to it."""

    def __init__(self) -> None:
        job_read, job_write = os.pipe()
        reply_read, reply_write = os.pipe()
        env = worker_environment(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_agent.runtime.wasm.worker", str(job_read), str(reply_write)],
                pass_fds=(job_read, reply_write),
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno(),  # never the daemon's stdout, which carries the protocol
                env=env,
                # Ctrl-C in a terminal (sent to its foreground process group) reaches the daemon,
                # which stops us. The daemon's session, not one of our own: Linux shares the cores
                # between sessions (autogroups) first, and the instances a worker makes ahead at a
                # lower priority must yield to the daemon and its client.
                process_group=0,
            )
        finally:
            os.close(job_read)
            os.close(reply_write)
        self._jobs = Connection(job_write, readable=False)
        self._replies = Connection(reply_read, writable=False)
        self.killed = False
        self.ready: frozenset[str] = frozenset()  # tools (digests) it has an instance ready for
        self.preparing: str | None = None  # the tool it is making an instance of, if any
        # The confinement of the jobs it may take (`confinement_key`): its first job's; None while
        # it has had none, and may take any.
        self.confinement: Hashable | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, job: Job) -> None:
        if self.confinement is None:
            self.confinement = confinement_key(job)  # the worker confines itself for this job
        try:
            self._jobs.send_bytes(encode(job))
        except OSError as error:
            raise WorkerGone(self.exit_description()) from error

    def receive(self, timeout: float, bound: int) -> Reply | None:
        """The next reply, or None if none came within `timeout` seconds. Raises WorkerGone, or
        MalformedMessage for a reply that does not decode or is larger than `bound` bytes."""
        try:
            if not self._replies.poll(max(timeout, 0.0)):
                return None
        except (EOFError, OSError) as error:
            raise WorkerGone(self.exit_description()) from error
        return self._read(bound)

    def _read(self, bound: int) -> Reply:
        """The reply waiting on the pipe (a reply is written whole: this does not wait for it)."""
        try:
            data = self._replies.recv_bytes(bound)
        except OSError as error:
            if error.args == ("bad message length",):  # what `recv_bytes` says of one over `bound`
                raise MalformedMessage(f"a reply larger than {bound:,} bytes") from None
            raise WorkerGone(self.exit_description()) from error
        except EOFError as error:
            raise WorkerGone(self.exit_description()) from error
        return decode_reply(data)

    async def receive_async(self, timeout: float, bound: int) -> Reply | None:
        """`receive`, awaited on the running event loop."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[bool] = loop.create_future()

        def settle(ready: bool) -> None:
            if not readable.done():
                readable.set_result(ready)

        fd = self._replies.fileno()
        loop.add_reader(fd, settle, True)
        timer = loop.call_later(max(timeout, 0.0), settle, False)
        try:
            if not await readable:
                return None
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        return self._read(bound)

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(OSError):
            self.process.kill()

    def close(self) -> None:
        """Let an idle worker go: it exits when its job pipe closes."""
        for connection in (self._jobs, self._replies):
            with contextlib.suppress(OSError):
                connection.close()

    def reap(self) -> None:
        self.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def exit_description(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "the worker process stopped answering"
        if code < 0:
            return f"the worker process was ended by signal {-code}"
        return f"the worker process exited with code {code}"


class CancelToken:
    """Cancels a call from another thread: the worker running it is killed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self._worker: Worker | None = None

    def attach(self, worker: Worker | None) -> None:
        with self._lock:
            self._worker = worker
            if worker is not None and self.cancelled:
                worker.kill()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._worker is not None:
                self._worker.kill()


class WorkerPool:
    """Runs jobs on up to `size` worker processes, plus one kept for describing tools being loaded,
    so a hot reload never waits behind busy calls and calls never wait behind a reload."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        # Workers started at most at once: one per call slot and the one describing tools; idle
        # workers confined for other grants are let go to keep to it.
        self._max_processes = size + 1
        self._calls = threading.BoundedSemaphore(size)
        self._loads = threading.BoundedSemaphore(1)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)  # a worker became idle, or stopped settling
        self._settling = 0  # workers making their next instance
        self._waiting = 0  # callers waiting for a free slot
        self._closed = False
        # A worker dies with the thread that started it (PR_SET_PDEATHSIG follows the thread), so
        # all are started by this one thread, which lives as long as the pool.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-spawn")
        # Waits for workers to make their next instance, off the caller's time.
        self._settler = ThreadPoolExecutor(max_workers=size, thread_name_prefix="worker-settle")
        self._settling_tasks: set[asyncio.Task[None]] = set()
        # Tools (digest, confinement) another worker is making an instance of, ahead.
        self._helping: set[tuple[str, Hashable]] = set()
        self._idle.append(self._spawn())  # started ahead, so the first call does not wait for Python

    def run(
        self,
        job: DescribeJob | InvokeJob,
        deadline_seconds: float,
        *,
        loading: bool = False,
        cancel: CancelToken | None = None,
    ) -> Outcome:
        """Run `job` on a worker; end it `deadline_seconds` after it starts, or when cancelled."""
        with self._lock:
            self._waiting += 1
        with self._loads if loading else self._calls:
            with self._lock:
                self._waiting -= 1
            digest = job.tool.digest if isinstance(job, InvokeJob) else None
            worker = self._take(digest, confinement_key(job))
            job = self._handed(worker, job, cancel)
            outcome: Outcome = Crashed("the call was interrupted")
            try:
                outcome = self._exchange(worker, job, deadline_seconds)
            finally:
                outcome = self._answered(worker, job, outcome, cancel, on_loop=False)
            return outcome

    async def run_async(
        self,
        job: InvokeJob,
        deadline_seconds: float,
        *,
        cancel: CancelToken,
        executor: ThreadPoolExecutor | None = None,
    ) -> Outcome:
        """`run` for a caller on an event loop. When a call slot and an idle worker are free at once
        (the usual case), the exchange is awaited on the loop, with no thread between the caller and
        the worker (a thread hop costs a call about 0.3 ms); otherwise `run` waits on `executor`."""
        worker = self._take_at_once(job.tool.digest, confinement_key(job))
        if worker is None:
            loop = asyncio.get_running_loop()
            blocking = functools.partial(self.run, job, deadline_seconds, cancel=cancel)
            waiting = loop.run_in_executor(executor, blocking)
            try:
                return await asyncio.shield(waiting)
            except asyncio.CancelledError:
                cancel.cancel()  # the thread's call ends at once (its worker is killed)
                raise
        try:
            job = self._handed_call(worker, job)
            cancel.attach(worker)
            outcome: Outcome = Crashed("the call was interrupted")
            try:
                outcome = await self._exchange_async(worker, job, deadline_seconds)
            except asyncio.CancelledError:
                cancel.cancel()
                raise
            finally:
                outcome = self._answered(worker, job, outcome, cancel, on_loop=True)
            return outcome
        finally:
            self._calls.release()

    def _take_at_once(self, digest: str | None, key: Hashable) -> Worker | None:
        """A call slot and an idle worker that may take a job of confinement `key` (one with
        `digest` ready if there is one), if both are free now; else None and nothing taken."""
        if not self._calls.acquire(blocking=False):
            return None
        with self._lock:
            worker = None if self._closed else self._pop_idle(digest, key)
            if worker is not None:
                self._busy.add(worker)
                return worker
        self._calls.release()
        return None

    def _pop_idle(self, digest: str | None, key: Hashable) -> Worker | None:
        """An idle worker that may take a job of confinement `key`, taken off the idle list:
        preferably one with an instance of the tool `digest` ready, then one confined for `key`,
        then a fresh one; None if there is none. The lock is held."""
        self._drop_dead_idle()
        suitable = [idle for idle in self._idle if _serves(idle, key)]
        worker = next((idle for idle in reversed(suitable) if digest in idle.ready), None)
        worker = worker or next((idle for idle in reversed(suitable) if idle.confinement == key), None)
        worker = worker or (suitable[-1] if suitable else None)
        if worker is None:
            return None
        self._idle.remove(worker)
        if worker.confinement is None and self._mixed(key):
            self._spawner.submit(self._add_fresh)
        return worker

    def _drop_dead_idle(self) -> None:
        """Idle workers that died while waiting (killed from outside, out of memory) are reaped and
        never handed a call: it would fail although it never ran. The lock is held."""
        for dead in [idle for idle in self._idle if idle.process.poll() is not None]:
            log.warning("an idle worker process ended (%s): replaced", dead.exit_description())
            self._idle.remove(dead)
            dead.close()
            worker_restart("crash")

    def _mixed(self, key: Hashable) -> bool:
        """Whether calls come under more than one confinement (`key` and another's): then a fresh
        worker is kept ready for the next new one. The lock is held."""
        workers = (*self._idle, *self._busy)
        return key != "off" and any(worker.confinement not in (None, key) for worker in workers)

    def _add_fresh(self) -> None:
        """Start a fresh worker, for the next call of a new confinement, if none is idle and the pool
        has room (on the spawner thread, off the caller's time)."""
        with self._lock:
            full = len(self._idle) + len(self._busy) >= self._max_processes
            if self._closed or full or any(idle.confinement is None for idle in self._idle):
                return
        worker = Worker()
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                self._returned.notify_all()
                return
        worker.reap()

    def _retire_surplus(self) -> None:
        """Before a worker more is started for a call: if the pool is full, the worker idle longest
        (confined for other grants, or it would have been taken) exits."""
        with self._lock:
            confined = [idle for idle in self._idle if idle.confinement is not None]
            if len(self._idle) + len(self._busy) < self._max_processes or not confined:
                return
            surplus = confined[0]
            self._idle.remove(surplus)
        threading.Thread(target=surplus.reap, name="worker-reap", daemon=True).start()

    def _handed(
        self, worker: Worker, job: DescribeJob | InvokeJob, cancel: CancelToken | None
    ) -> DescribeJob | InvokeJob:
        """`job` as sent to `worker`, which it now runs."""
        if isinstance(job, InvokeJob):
            handed: DescribeJob | InvokeJob = self._handed_call(worker, job)
        else:
            handed = dataclasses.replace(job, loaded=job.tool.digest in worker.ready)
        if cancel is not None:
            cancel.attach(worker)
        return handed

    def _handed_call(self, worker: Worker, job: InvokeJob) -> InvokeJob:
        """The call `job` as sent to `worker`: whether the worker has it loaded, and whether it
        makes the next instance after it."""
        with self._lock:
            # With callers queued behind it, a worker's next instance is made on their time anyway:
            # it skips the handover, which only adds work on busy cores.
            prepare = self._waiting == 0
        # A worker with an instance ready has the component loaded: it starts the call at once,
        # without saying so first.
        job = dataclasses.replace(job, prepare=prepare, loaded=job.tool.digest in worker.ready)
        # A tool called again is likely to be called once more, maybe before this worker has made
        # its next instance: another worker makes one meanwhile.
        if prepare and job.loaded:
            self._keep_one_ready(job)
        return job

    def _answered(
        self,
        worker: Worker,
        job: DescribeJob | InvokeJob,
        outcome: Outcome,
        cancel: CancelToken | None,
        on_loop: bool,
    ) -> Outcome:
        """Take `worker` back after `job` ended with `outcome`; return how the job ended."""
        if cancel is not None:
            cancel.attach(None)
            if cancel.cancelled:
                outcome = Cancelled()
        # A worker that says it retires exits after this reply: it is not handed out again.
        healthy = isinstance(outcome, Described | Done | Failed) and not outcome.retire
        if not healthy and not self._closed:
            worker_restart(_restart_reason(outcome))
        if healthy and isinstance(outcome, Done) and outcome.preparing:
            with self._lock:
                self._settling += 1
                worker.preparing = job.tool.digest
            if on_loop:  # awaited there, as the call was: a settling thread would cost the loop a wake-up
                task = asyncio.get_running_loop().create_task(self._settle_async(worker))
                self._settling_tasks.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._settling_tasks.discard)
            else:
                self._settler.submit(self._settle, worker, PREPARE_SECONDS)
        else:
            self._give_back(worker, healthy)
        return outcome

    def _keep_one_ready(self, job: InvokeJob) -> None:
        """While one worker runs a call, have another make an instance of the same tool, so that the
        next call finds one ready even before the first worker has made its own next instance."""
        digest, key = job.tool.digest, confinement_key(job)
        with self._lock:
            suitable = [idle for idle in self._idle if _serves(idle, key)]
            if self._closed or (digest, key) in self._helping:
                return
            if any(digest in idle.ready for idle in suitable):
                return
            if any(busy.preparing == digest and busy.confinement == key for busy in self._busy):
                return
            helper = next((idle for idle in reversed(suitable) if not idle.ready), None)
            helper = helper or (suitable[0] if suitable else None)
            if helper is None and len(self._busy) + len(self._idle) >= self._size:
                return  # every worker is in use: calls make their own instances anyway
            if helper is not None:
                self._idle.remove(helper)
                self._busy.add(helper)
                helper.preparing = digest
            self._helping.add((digest, key))
            self._settling += 1
        self._settler.submit(self._prepare_on, helper, PrepareJob(job.tool, job.sandbox, job.confinement))

    def _prepare_on(self, helper: Worker | None, job: PrepareJob) -> None:
        message: Reply | None
        try:
            if helper is None:  # a worker more, started now, well before the next call comes
                helper = self._spawn()
                with self._lock:
                    self._busy.add(helper)
            helper.preparing = job.tool.digest
            helper.send(job)
            message = helper.receive(LOAD_SECONDS, reply_bound(job))
        # RuntimeError: the pool closed while a worker started.
        except (WorkerGone, MalformedMessage, RuntimeError):
            message = None
        finally:
            with self._lock:
                self._helping.discard((job.tool.digest, confinement_key(job)))
        self._finish_settling(helper, message)

    def _settle(self, worker: Worker, timeout: float) -> None:
        """Give `worker` back once it has made its next instance; replace it if it takes too long."""
        message: Reply | None
        try:
            message = worker.receive(timeout, PREPARED_BOUND)
        except (WorkerGone, MalformedMessage):
            message = None
        self._finish_settling(worker, message)

    async def _settle_async(self, worker: Worker) -> None:
        message: Reply | None
        try:
            message = await worker.receive_async(PREPARE_SECONDS, PREPARED_BOUND)
        except (WorkerGone, MalformedMessage):
            message = None
        self._finish_settling(worker, message)

    def _finish_settling(self, worker: Worker | None, message: Reply | None) -> None:
        try:
            if worker is None:
                return
            worker.preparing = None
            if not isinstance(message, Prepared):
                if not self._closed:  # else it was stopped on purpose
                    log.warning("a worker failed to make an instance in time: replaced")
                    worker_restart("prepare")
                self._give_back(worker, healthy=False)
                return
            worker.ready = message.ready
            self._give_back(worker, healthy=True)
        finally:
            with self._lock:
                self._settling -= 1
                self._returned.notify_all()

    def _exchange(self, worker: Worker, job: DescribeJob | InvokeJob, deadline_seconds: float) -> Outcome:
        bound = reply_bound(job)
        try:
            worker.send(job)
            first = worker.receive(_first_wait(job, deadline_seconds), bound)
            if not isinstance(first, Started):
                return _ended(first, loading=not job.loaded)
            return _ended(worker.receive(deadline_seconds + KILL_GRACE_SECONDS, bound), loading=False)
        except WorkerGone as gone:
            return Crashed(str(gone))
        except MalformedMessage as error:
            return Crashed(f"the worker process sent {error}")

    async def _exchange_async(self, worker: Worker, job: InvokeJob, deadline_seconds: float) -> Outcome:
        bound = reply_bound(job)
        try:
            worker.send(job)  # a pipe takes a job at once (a very large one blocks, as in `run`)
            first = await worker.receive_async(_first_wait(job, deadline_seconds), bound)
            if not isinstance(first, Started):
                return _ended(first, loading=not job.loaded)
            final = await worker.receive_async(deadline_seconds + KILL_GRACE_SECONDS, bound)
            return _ended(final, loading=False)
        except WorkerGone as gone:
            return Crashed(str(gone))
        except MalformedMessage as error:
            return Crashed(f"the worker process sent {error}")

    def _take(self, digest: str | None, key: Hashable) -> Worker:
        """An idle worker that may take a job of confinement `key`, preferably one with an instance
        of the tool `digest` ready; or a new one."""
        with self._lock:
            while True:
                if self._closed:
                    raise WorkerGone("the tool host is stopping")
                worker = self._pop_idle(digest, key)
                # A worker about to finish its next instance (a millisecond or so) is sooner than a
                # new one (0.15 s), and more processes than calls only compete for the cores.
                settling = self._settling and self._settling_for(key)
                if worker is not None or not settling or not self._returned.wait(PREPARE_SECONDS):
                    break
        started = worker is None
        if worker is None:
            self._retire_surplus()
            worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
            if started and self._mixed(key):  # the next new confinement need not wait as this one did
                self._spawner.submit(self._add_fresh)
        return worker

    def _settling_for(self, key: Hashable) -> bool:
        """Whether a worker that may take a job of confinement `key` is making its next instance
        (or one more is starting to): it is back in a moment. The lock is held."""
        preparing = [busy for busy in self._busy if busy.preparing is not None]
        return len(preparing) < self._settling or any(_serves(busy, key) for busy in preparing)

    def _give_back(self, worker: Worker, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if healthy and not worker.killed and not self._closed:
                self._idle.append(worker)
                self._returned.notify_all()
                return
        worker.kill()
        threading.Thread(target=worker.reap, name="worker-reap", daemon=True).start()
        self._replace()

    def _replace(self) -> None:
        """Keep one worker starting or ready, so the next call after a kill does not wait."""
        with self._lock:
            if self._closed or self._idle:
                return
            self._idle.append(self._spawn())
            self._returned.notify_all()

    def _spawn(self) -> Worker:
        return self._spawner.submit(Worker).result()

    def idle_workers(self) -> list[Worker]:
        with self._lock:
            return list(self._idle)

    def busy_pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._busy]

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in (*self._idle, *self._busy)]

    def close(self) -> None:
        """Idle workers exit; busy ones are killed (their callers get `crashed` or `cancelled`)."""
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._returned.notify_all()
        for worker in busy:
            worker.kill()
        for task in list(self._settling_tasks):  # each ends as its worker does; none outlives its loop
            with contextlib.suppress(RuntimeError):  # that loop is closed already
                task.get_loop().call_soon_threadsafe(task.cancel)
        for worker in idle:
            worker.reap()
        self._spawner.shutdown(wait=False)
        self._settler.shutdown(wait=False)


def _serves(worker: Worker, key: Hashable) -> bool:
    """Whether `worker` may take a job of confinement `key`: it is fresh, or confined for it."""
    return worker.confinement is None or worker.confinement == key


def _first_wait(job: DescribeJob | InvokeJob, deadline_seconds: float) -> float:
    """How long the first message of `job` may take: the call's own time if the component is
    loaded (the call starts at once), else the time to load it (`started` follows)."""
    return deadline_seconds + KILL_GRACE_SECONDS if job.loaded else LOAD_SECONDS


def _ended(message: Reply | None, loading: bool) -> Outcome:
    """How a job ended, from its last message (None: none came in time)."""
    if message is None:
        return TimedOut(loading)
    if isinstance(message, Started | Prepared):
        return Crashed(f"the worker process sent {type(message).__name__} where a job's end was due")
    return message


def _restart_reason(outcome: Outcome) -> str:
    """Why the worker that ended a job with `outcome` is replaced (the worker-restarts metric's
    `reason`)."""
    if isinstance(outcome, TimedOut):
        return "deadline"
    if isinstance(outcome, Cancelled):
        return "cancel"
    if isinstance(outcome, Crashed):
        return "crash"
    # A worker that retired after answering; else it ended itself over its write quota.
    return "retired" if isinstance(outcome, Described | Done | Failed) else "quota"
