"""Whatever a client sends, the daemon answers with JSON-RPC errors or drops it, and keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_agent.common.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    InvalidParams,
)
from llama_agent.faces.wire.params import parse_agent_run

from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.wat_tools import tool_wasm

MIB = 1024 * 1024
# The answers a bad request may get: invalid request/params, unknown method, not initialized.
EXPECTED_ERRORS = {INVALID_REQUEST, INVALID_PARAMS, METHOD_NOT_FOUND, SERVER_NOT_INITIALIZED}


@pytest.fixture
async def daemon(start_daemon: StartDaemon, tools_dir: Path) -> DaemonSession:
    session = await start_daemon("--tools-dir", tools_dir)
    return session


async def test_a_request_before_initialize_is_refused(start_daemon: StartDaemon, tools_dir: Path) -> None:
    session = await start_daemon("--tools-dir", tools_dir, initialize=False)
    for method in ("tools/list", "tools/invoke", "agent/run"):
        with pytest.raises(RpcError) as raised:
            await session.request(method, {})
        assert raised.value.code == SERVER_NOT_INITIALIZED
    await session.initialize()
    assert await session.echoes()


async def test_malformed_json_gets_a_parse_error(daemon: DaemonSession) -> None:
    daemon.send_raw(b"Content-Length: 12\r\n\r\n{not: json!}")
    assert await daemon.echoes()
    assert [error["code"] for error in daemon.parse_errors] == [PARSE_ERROR]


async def test_a_short_content_length_loses_only_that_message(daemon: DaemonSession) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "tools/list"}).encode()
    daemon.send_raw(b"Content-Length: %d\r\n\r\n" % (len(body) - 7) + body)
    assert await daemon.echoes()


async def test_a_long_content_length_loses_only_that_message(daemon: DaemonSession) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "tools/list"}).encode()
    daemon.send_raw(b"Content-Length: %d\r\n\r\n" % (len(body) + 30) + body)
    # The next frame's header turns up inside the overlong body: the reader starts again there.
    _, next_one = daemon.request_future("tools/list")
    assert "tools" in await asyncio.wait_for(next_one, 30)
    assert await daemon.echoes()


async def test_unknown_methods_are_method_not_found(daemon: DaemonSession) -> None:
    with pytest.raises(RpcError) as raised:
        await daemon.request("tools/explode", {})
    assert (raised.value.code, raised.value.message) == (METHOD_NOT_FOUND, "Method not found: tools/explode")
    daemon.notify("tools/whatever", {"x": 1})  # unknown notifications are ignored
    assert await daemon.echoes()


async def test_a_request_with_params_lsp_cannot_read_is_answered(daemon: DaemonSession) -> None:
    with pytest.raises(RpcError) as raised:
        await daemon.request("initialize", {"capabilities": 5})
    assert raised.value.code == INVALID_PARAMS
    assert "capabilities" in raised.value.message
    assert await daemon.echoes()


async def test_large_messages(daemon: DaemonSession) -> None:
    big = "y" * (8 * MIB)
    result = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": big}})
    assert result["truncated"] is True
    assert len(result["content"][0]["text"]) == MIB
    huge = b"Content-Length: %d\r\n\r\n" % (70 * MIB)
    daemon.send_raw(huge + b" " * (70 * MIB))  # over the 64 MiB limit: dropped unread
    assert await daemon.echoes()


async def test_a_client_that_disappears_mid_request_ends_the_daemon_promptly(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    (tools_dir / "spins.wasm").write_bytes(tool_wasm("spins", behaviour="loop"))
    session = await start_daemon("--tools-dir", tools_dir)
    await session.request("tools/list")
    session.request_future("tools/invoke", {"name": "spins", "arguments": {"value": "x"}})
    await asyncio.sleep(0.2)
    assert session.process.stdin is not None
    session.process.stdin.close()
    started = time.perf_counter()
    assert await session.wait_exit(timeout=10) == 1  # no shutdown was asked for
    assert time.perf_counter() - started < 3.0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "name",
        "arguments",
        "prompt",
        "tools",
        "maxSteps",
        "seed",
        "value",
        "$schema",
        "",
        "sessionId",
        "session",
        "id",
        "action",
        "tool",
    ]
)
PARAMS = JSON | st.dictionaries(KEYS, JSON, max_size=5)
METHODS = st.sampled_from(
    [
        "initialize",
        "tools/list",
        "tools/invoke",
        "agent/run",
        "agent/newSession",
        "agent/forget",
        "agent/history",
        "grants/list",
        "grants/answer",
        "grants/revoke",
    ]
)


def starts_a_model_run(method: str, params: Any) -> bool:
    """Whether the daemon would accept this as an agent/run: this test is about bad input."""
    if method != "agent/run":
        return False
    try:
        parse_agent_run(params)
    except InvalidParams:
        return False
    return True


REQUESTS = st.tuples(METHODS, PARAMS).filter(lambda request: not starts_a_model_run(*request))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(request=REQUESTS)
async def test_params_of_any_shape_get_an_answer_and_the_daemon_serves_on(
    daemon: DaemonSession, request: tuple[str, Any]
) -> None:
    method, params = request
    try:
        result = await daemon.request(method, params, timeout=30)
    except RpcError as error:
        assert error.code in EXPECTED_ERRORS, error
    else:
        assert isinstance(result, dict), result
    assert await daemon.echoes()
