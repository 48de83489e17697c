"""A tenant's quotas, on a clock the test moves: each refuses past its limit with -32013, the quota's
name and a retry-after that is when the request would pass, and lets it pass from then on."""

from __future__ import annotations

import asyncio
import threading

import pytest
from llama_agent.common.errors import QUOTA_EXCEEDED, AgentError, QuotaExceeded
from llama_agent.faces.acp import acp_error
from llama_agent.faces.lsp.protocol import lsp_error
from llama_agent.faces.mcp import mcp_error
from llama_agent.faces.wire.jsonrpc import client_safe_error
from llama_agent.services.tenants.config import TenantLimits
from llama_agent.services.tenants.quotas import SESSION_RETRY_AFTER, TenantQuota
from lsprotocol import types


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def quota(clock: Clock, **limits: int) -> TenantQuota:
    every = {"max_sessions": 2, "max_concurrent_runs": 1, "calls_per_minute": 3, "tokens_per_day": 1000}
    return TenantQuota(TenantLimits(**{**every, **limits}), clock=clock)


def test_the_error_has_its_own_code_and_says_which_quota_and_when_to_retry() -> None:
    error = QuotaExceeded("calls_per_minute", 11.2, "120 per minute")
    assert isinstance(error, AgentError) and error.code == QUOTA_EXCEEDED == -32013
    assert error.message == "quota exceeded: calls_per_minute (120 per minute); retry after 12 s"
    assert error.data == {"quota": "calls_per_minute", "retryAfter": 12}
    assert QuotaExceeded("tokens_per_day", 0.0).data == {"quota": "tokens_per_day", "retryAfter": 1}


def test_every_face_answers_it_with_its_code_message_and_data() -> None:
    error = QuotaExceeded("max_sessions", 5, "8 at once")
    wanted = (-32013, error.message, {"quota": "max_sessions", "retryAfter": 5})
    on_lsp = client_safe_error(types.ResponseError(*_lsp(error)))
    assert (on_lsp.code, on_lsp.message, on_lsp.data) == wanted
    on_mcp = mcp_error(error).error
    assert (on_mcp.code, on_mcp.message, on_mcp.data) == wanted
    on_acp = acp_error(error)
    assert (on_acp.code, str(on_acp), on_acp.data) == wanted


def _lsp(error: QuotaExceeded) -> tuple[int, str, object]:
    answered = lsp_error(error)
    return answered.code, answered.message, answered.data


def test_sessions_past_the_limit_are_refused_until_one_is_released() -> None:
    limits = quota(Clock(), max_sessions=2)
    first, _second = limits.open_session(), limits.open_session()
    with pytest.raises(QuotaExceeded) as refused:
        limits.open_session()
    assert refused.value.data == {"quota": "max_sessions", "retryAfter": SESSION_RETRY_AFTER}
    first()
    first()  # released once, however often it is called
    assert limits.usage().sessions == 1
    limits.open_session()
    with pytest.raises(QuotaExceeded):
        limits.open_session()


def test_calls_past_the_limit_wait_for_the_oldest_to_leave_the_minute() -> None:
    clock = Clock()
    limits = quota(clock, calls_per_minute=3)
    for _ in range(3):
        limits.count_call()
        clock.now += 10
    with pytest.raises(QuotaExceeded) as refused:
        limits.count_call()
    # The first call was made 30 s ago: it leaves the window in 30 s.
    assert refused.value.data == {"quota": "calls_per_minute", "retryAfter": 30}
    assert limits.usage().calls_in_window == 3  # a refused call is not counted
    clock.now += 29.5
    with pytest.raises(QuotaExceeded):
        limits.count_call()
    clock.now += 0.5
    limits.count_call()
    with pytest.raises(QuotaExceeded) as again:
        limits.count_call()
    assert again.value.data == {"quota": "calls_per_minute", "retryAfter": 10}


def test_tokens_past_the_days_limit_refuse_runs_until_enough_leave_the_24_hours() -> None:
    clock = Clock(0.0)
    limits = quota(clock, tokens_per_day=1000)
    limits.add_tokens(600)
    clock.now = 3600.0
    limits.check_tokens()
    limits.add_tokens(500)  # a run is not cut: the total may pass the limit
    with pytest.raises(QuotaExceeded) as refused:
        limits.check_tokens()
    # The first 600 leave at the end of their minute, a day on: then 500 are left, under 1000.
    assert refused.value.data == {"quota": "tokens_per_day", "retryAfter": 86400 + 60 - 3600}
    clock.now = 86400 + 59.0
    with pytest.raises(QuotaExceeded):
        limits.check_tokens()
    clock.now = 86400 + 60.0
    limits.check_tokens()
    assert limits.usage().tokens_in_window == 500


def test_the_tokens_retry_after_counts_only_what_must_leave() -> None:
    clock = Clock(0.0)
    limits = quota(clock, tokens_per_day=1000)
    for minute in range(4):
        clock.now = minute * 60.0
        limits.add_tokens(300)
    with pytest.raises(QuotaExceeded) as refused:
        limits.check_tokens()
    # 1200 tokens: once the first minute's 300 leave, 900 are left.
    assert refused.value.retry_after == 86400 + 60 - 180


async def test_runs_past_the_limit_are_refused_at_once_with_an_estimate() -> None:
    clock = Clock()
    limits = quota(clock, max_concurrent_runs=1)
    async with limits.run_slot():
        clock.now += 4
        with pytest.raises(QuotaExceeded) as refused:
            async with limits.run_slot():
                raise AssertionError("a second run got in")
        assert refused.value.quota == "max_concurrent_runs"
        assert refused.value.retry_after == 6  # no run timed yet: 10 s guessed, 4 s of it gone
    assert limits.usage().runs == 0
    async with limits.run_slot():  # free again
        pass


async def test_a_run_that_fails_gives_its_slot_back() -> None:
    limits = quota(Clock(), max_concurrent_runs=1)
    with pytest.raises(RuntimeError):
        async with limits.run_slot():
            raise RuntimeError("the run failed")
    task = asyncio.create_task(_hold(limits, asyncio.Event()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert limits.usage().runs == 0


async def _hold(limits: TenantQuota, forever: asyncio.Event) -> None:
    async with limits.run_slot():
        await forever.wait()


def test_calls_from_many_threads_are_counted_exactly() -> None:
    limits = quota(Clock(), calls_per_minute=500)
    refused: list[QuotaExceeded] = []

    def calls() -> None:
        for _ in range(100):
            try:
                limits.count_call()
            except QuotaExceeded as error:
                refused.append(error)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limits.usage().calls_in_window == 500 and len(refused) == 300
