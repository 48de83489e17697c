"""The load's user: one LSP session over a WebSocket through the balancer, firing Locust's
`events.request` for each JSON-RPC request (request_type "lsp", name the method).

A session connects with one of the tenants' tokens, `initialize`s, then loops, one request at a
time with a think time between them (THINK seconds, uniform; 0 in the capacity phases):

| request | weight | params |
| --- | --- | --- |
| `tools/list` | 2 | |
| `tools/invoke` echo | 4 | a short value |
| `tools/invoke` read_file | 3 | the workspace's `notes.txt` |
| `tools/invoke` calc | 3 | a short expression |
| `agent/run` | 1 | a short prompt, `maxSteps` 2, `maxTokens` 16 |

llama_cpp.server decodes one request at a time (it has no parallel slots), so the load generator
keeps at most RUNS_IN_FLIGHT agent runs in flight across all sessions; a session drawing a run
while they are all taken sends `tools/list` instead, and `skipped_runs` counts those draws.

Failures are what a user would see: an error answer, or no answer (the connection ended, or
nothing within the timeout). A session whose connection closes reconnects through the balancer
(a close with 1001 is a replica going away in order). An answer "the server is shutting down" is
a request the draining replica did not take: it is sent again on a new connection, and counted
in `resent`, not as a failure; the latency recorded is the whole time, resend included. Before
sending, a session reads what already arrived: a connection found ended then (a close, or the
end of the stream from a killed replica) had nothing in flight, and the request goes on a new one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent
from gevent.lock import BoundedSemaphore
from locust import User, task

from bench.load.client import Closed, NoAnswer, Refused, RpcSession, Stale

SHUTTING_DOWN = "the server is shutting down"
TOOL_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0
RECONNECT_PAUSE = 0.2
MAX_RESENDS = 3

WEIGHTS: dict[str, int] = {"tools/list": 2, "echo": 4, "read_file": 3, "calc": 3, "agent/run": 1}
RUN_PARAMS = {"prompt": "Please echo back 'load test'", "maxSteps": 2, "maxTokens": 16}
CALC_EXPRESSIONS = ("46 * 19", "sqrt(81) + 2", "(7 - 2) * 3 + 1", "350 * 8 / 100")


@dataclass
class Settings:
    """Set by the orchestrator before the users start (one load generator per process)."""

    url: str = ""
    tokens: list[str] = field(default_factory=list)
    think: tuple[float, float] = (1.0, 3.0)
    runs_in_flight: int = 2
    runs: bool = True  # False: no agent runs (the capacity phases measure the tools alone)


@dataclass
class Counters:
    connects: int = 0
    connect_failures: int = 0
    closes: dict[int, int] = field(default_factory=dict)  # close code -> connections ended so
    lost_in_flight: int = 0  # requests pending on a connection that ended without a close frame
    resent: int = 0
    skipped_runs: int = 0


SETTINGS = Settings()
COUNTERS = Counters()
RUN_SLOTS = BoundedSemaphore(SETTINGS.runs_in_flight)


def configure(settings: Settings) -> None:
    global SETTINGS, RUN_SLOTS
    SETTINGS = settings
    RUN_SLOTS = BoundedSemaphore(settings.runs_in_flight)


def request_for(kind: str) -> tuple[str, str, dict[str, Any], float]:
    """(method, name to record, params, timeout) of a kind of request."""
    if kind == "tools/list":
        return "tools/list", "tools/list", {}, TOOL_TIMEOUT
    if kind == "agent/run":
        return "agent/run", "agent/run", dict(RUN_PARAMS), RUN_TIMEOUT
    arguments: dict[str, Any] = {
        "echo": {"value": "load"},
        "read_file": {"path": "notes.txt"},
        "calc": {"expression": random.choice(CALC_EXPRESSIONS)},
    }[kind]
    return "tools/invoke", f"tools/invoke {kind}", {"name": kind, "arguments": arguments}, TOOL_TIMEOUT


class LspUser(User):
    """One editor session against the service, through the balancer."""

    abstract = False
    kinds: ClassVar[list[str]] = list(WEIGHTS)
    weights: ClassVar[list[int]] = list(WEIGHTS.values())

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.session: RpcSession | None = None
        self.token = random.choice(SETTINGS.tokens)

    def wait_time(self) -> float:
        low, high = SETTINGS.think
        return random.uniform(low, high) if high > 0 else 0.0

    def on_start(self) -> None:
        self.connected()  # before the first request: its latency is not the session's opening

    def on_stop(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    @task
    def step(self) -> None:
        kind = random.choices(self.kinds, self.weights)[0]
        if kind == "agent/run" and not SETTINGS.runs:
            kind = "tools/list"
        elif kind == "agent/run" and not RUN_SLOTS.acquire(blocking=False):
            COUNTERS.skipped_runs += 1
            kind = "tools/list"
        elif kind == "agent/run":
            try:
                self.request(kind)
            finally:
                RUN_SLOTS.release()
            return
        self.request(kind)

    def request(self, kind: str) -> None:
        method, name, params, timeout = request_for(kind)
        started, start_time = time.perf_counter(), time.time()
        answer: dict[str, Any] | None = None
        failure: str | None = "no-answer"
        for _ in range(MAX_RESENDS + 1):
            session = self.connected()
            if session is None:
                failure = "no-answer"
                break
            try:
                answer, failure = self.exchange(session, method, params, timeout)
            except Stale as stale:
                COUNTERS.closes[stale.code] = COUNTERS.closes.get(stale.code, 0) + 1
                self.drop()  # it ended while the session thought: the request was never sent
                continue
            if not (answer and "error" in answer and answer["error"].get("message") == SHUTTING_DOWN):
                break
            COUNTERS.resent += 1
            self.drop()
        self.record(name, started, start_time, answer, failure)

    def exchange(
        self, session: RpcSession, method: str, params: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any] | None, str | None]:
        try:
            answer = session.call(method, params, timeout)
        except Stale:
            raise
        except Closed as closed:
            COUNTERS.closes[closed.code] = COUNTERS.closes.get(closed.code, 0) + 1
            if closed.code == 1006:
                COUNTERS.lost_in_flight += 1
            self.drop()
            return None, "no-answer"
        except NoAnswer:
            self.drop()
            return None, "no-answer"
        return answer, ("error" if "error" in answer else None)

    def record(
        self, name: str, started: float, start_time: float, answer: dict[str, Any] | None, failure: str | None
    ) -> None:
        error = answer.get("error") if answer else None
        context = {"failure": failure, "code": error.get("code") if isinstance(error, dict) else None}
        self.environment.events.request.fire(
            request_type="lsp",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            response=answer,
            context=context,
            exception=None if failure is None else RuntimeError(failure if error is None else str(error)),
            start_time=start_time,
            url=SETTINGS.url,
        )

    def connected(self) -> RpcSession | None:
        """The session's connection, opened (and initialized) again if it ended; None if the
        service could not be reached within the request timeout."""
        deadline = time.monotonic() + TOOL_TIMEOUT
        while self.session is None and time.monotonic() < deadline:
            try:
                session = RpcSession(SETTINGS.url, self.token)
            except Refused:
                COUNTERS.connect_failures += 1
                gevent.sleep(RECONNECT_PAUSE)
                continue
            try:
                answer = session.call("initialize", {"processId": None, "capabilities": {}}, TOOL_TIMEOUT)
                session.notify("initialized", {})
            except (Closed, NoAnswer):
                session.close()
                COUNTERS.connect_failures += 1
                continue
            if "result" not in answer:
                session.close()
                COUNTERS.connect_failures += 1
                gevent.sleep(RECONNECT_PAUSE)
                continue
            COUNTERS.connects += 1
            self.session = session
        return self.session

    def drop(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
