"""A tenant's quotas: how much of a shared deployment one tenant may use.

One `TenantQuota` per tenant, shared by all its sessions (faces and sessions call it from the
event loop and from threads alike: a lock guards it, and every method is a few list operations).
Its four limits, from the tenants file:

- `max_sessions`: sessions open at once. The face takes one with `open_session()` when a client
  connects, and calls what it returns when the client goes. Over it: retry after
  `SESSION_RETRY_AFTER` seconds (a guess: nothing says when another client of the tenant leaves).
- `max_concurrent_runs`: agent runs at once (`async with quota.run_slot():`). Over it the run is
  refused at once, not queued (the model's own queue is fair across tenants: services/tenants/
  fair.py); the retry-after is the tenant's usual run length less how long its oldest run has run.
- `calls_per_minute`: tool calls in any 60 seconds (`count_call()`: one per call a client asks for,
  one per call a run makes), a sliding window; retry after the oldest call leaves it.
- `tokens_per_day`: prompt and completion tokens in any 24 hours (a rolling window, not the UTC
  day: no rush at midnight; counted to the minute). `check_tokens()` before a run refuses it while
  the tenant is at its limit (a run is not cut once started: how many tokens it will take is not
  known before); `add_tokens(n)` counts each turn's. Retry after enough of them leave the window.

Over a quota raises `QuotaExceeded` (-32013; `data`: `{"quota": name, "retryAfter": seconds}`).
Every window is on `clock` (monotonic: a change of the wall clock moves nothing).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from llama_agent.common.errors import QuotaExceeded
from llama_agent.runtime.telemetry.metrics import sandbox_refusal

SESSION_RETRY_AFTER = 5.0  # seconds
CALL_WINDOW = 60.0  # calls_per_minute's window, in seconds
TOKEN_WINDOW = 24 * 3600.0  # tokens_per_day's
TOKEN_BUCKET = 60.0  # tokens are counted by the minute: at most 1,440 counts a tenant
FIRST_RUN_GUESS = 10.0  # seconds a run takes, until the tenant's runs have been timed
RUN_AVERAGING = 0.2  # the weight of the latest run in the average run length


class Limits(Protocol):
    """A tenant's limits (services/tenants/config.py's `TenantLimits`), each a positive int."""

    @property
    def max_sessions(self) -> int: ...

    @property
    def max_concurrent_runs(self) -> int: ...

    @property
    def calls_per_minute(self) -> int: ...

    @property
    def tokens_per_day(self) -> int: ...


@dataclass(frozen=True)
class QuotaUsage:
    """What a tenant uses now, against its limits."""

    sessions: int
    runs: int
    calls_in_window: int
    tokens_in_window: int


@dataclass
class _Tokens:
    minute: float  # the start of the minute they were counted in
    count: int


class TenantQuota:
    """One tenant's use of the deployment, held to its `limits` (see the module's docstring)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions = 0
        self._runs: dict[int, float] = {}  # each run's start
        self._run_ids = itertools.count()
        self._run_seconds = FIRST_RUN_GUESS
        self._calls: deque[float] = deque()  # when each call in the window was made
        self._tokens: deque[_Tokens] = deque()
        self._token_total = 0

    def set_limits(self, limits: Limits) -> None:
        """Hold the tenant to `limits` from now on (the tenants file was reloaded): what it uses
        now is kept and counted against them (over a new, lower `max_sessions`, say, nothing is
        closed, but no session opens until enough have ended)."""
        with self._lock:
            self.limits = limits

    def usage(self) -> QuotaUsage:
        with self._lock:
            now = self._clock()
            self._expire_calls(now)
            self._expire_tokens(now)
            return QuotaUsage(self._sessions, len(self._runs), len(self._calls), self._token_total)

    # -- sessions ---------------------------------------------------------------------------------

    def open_session(self) -> Callable[[], None]:
        """Take one of the tenant's sessions; returns what gives it back (once, however often it
        is called). Raises QuotaExceeded when all are taken."""
        with self._lock:
            if self._sessions >= self.limits.max_sessions:
                limit = f"{self.limits.max_sessions} at once"
                raise _refused("max_sessions", SESSION_RETRY_AFTER, limit)
            self._sessions += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._sessions -= 1

        return release

    # -- runs -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def run_slot(self) -> AsyncIterator[None]:
        """Hold one of the tenant's concurrent runs for the block; raises QuotaExceeded at once
        when all are taken."""
        run = self._start_run()
        try:
            yield
        finally:
            self._end_run(run)

    def _start_run(self) -> int:
        with self._lock:
            now = self._clock()
            if len(self._runs) >= self.limits.max_concurrent_runs:
                oldest = now - min(self._runs.values())
                limit = f"{self.limits.max_concurrent_runs} at once"
                raise _refused("max_concurrent_runs", self._run_seconds - oldest, limit)
            run = next(self._run_ids)
            self._runs[run] = now
            return run

    def _end_run(self, run: int) -> None:
        with self._lock:
            seconds = self._clock() - self._runs.pop(run)
            self._run_seconds += RUN_AVERAGING * (seconds - self._run_seconds)

    # -- calls ------------------------------------------------------------------------------------

    def count_call(self) -> None:
        """Count one tool call; raises QuotaExceeded (and counts nothing) when the last minute
        already holds `calls_per_minute` of them."""
        with self._lock:
            now = self._clock()
            self._expire_calls(now)
            if len(self._calls) >= self.limits.calls_per_minute:
                retry_after = self._calls[0] + CALL_WINDOW - now
                limit = f"{self.limits.calls_per_minute} per minute"
                raise _refused("calls_per_minute", retry_after, limit)
            self._calls.append(now)

    def _expire_calls(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - CALL_WINDOW:
            self._calls.popleft()

    # -- tokens -----------------------------------------------------------------------------------

    def check_tokens(self) -> None:
        """Raises QuotaExceeded while the last 24 hours hold `tokens_per_day` tokens or more."""
        with self._lock:
            now = self._clock()
            self._expire_tokens(now)
            if self._token_total >= self.limits.tokens_per_day:
                limit = f"{self.limits.tokens_per_day} per 24 h"
                raise _refused("tokens_per_day", self._tokens_free_in(now), limit)

    def add_tokens(self, count: int) -> None:
        """Count `count` tokens used now (a turn's prompt and completion)."""
        if count <= 0:
            return
        with self._lock:
            now = self._clock()
            minute = math.floor(now / TOKEN_BUCKET) * TOKEN_BUCKET
            if self._tokens and self._tokens[-1].minute == minute:
                self._tokens[-1].count += count
            else:
                self._tokens.append(_Tokens(minute, count))
            self._token_total += count

    def _expire_tokens(self, now: float) -> None:
        while self._tokens and _leaves_window(self._tokens[0]) <= now:
            self._token_total -= self._tokens.popleft().count

    def _tokens_free_in(self, now: float) -> float:
        """Seconds until the window holds fewer tokens than the limit."""
        left = self._token_total
        for tokens in self._tokens:
            left -= tokens.count
            if left < self.limits.tokens_per_day:
                return _leaves_window(tokens) - now
        return 0.0  # unreachable while over the limit: every count leaves in the end


def _refused(quota: str, retry_after: float, limit: str) -> QuotaExceeded:
    """The error for a request over `quota`, counted among the sandbox's refusals (the tenant's,
    from the request's context)."""
    sandbox_refusal("quota")
    return QuotaExceeded(quota, retry_after, limit)


def _leaves_window(tokens: _Tokens) -> float:
    """When the last of a minute's tokens leaves the 24 hours: the end of that minute, a day on."""
    return tokens.minute + TOKEN_BUCKET + TOKEN_WINDOW
