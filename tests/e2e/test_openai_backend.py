"""The openai backend over stdio, against a real OpenAI-compatible server on loopback.

The server is llama-cpp-python's own (`llama_cpp.server`) serving the embedded GGUF; failures
real servers have (a refused field, a 5xx, a stream broken off, text outside the schema, a
stall) come from a proxy in front of it (tests/model_server.py). As with the local model, only
what the design guarantees is asserted, never what the model chose to say.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import MODEL_UNAVAILABLE, REQUEST_CANCELLED
from llama_agent.services.agent.snapping import snap_arguments

from tests.model_server import MODEL_ALIAS, FaultProxy, Faults, free_port, llama_server
from tests.rpc import DaemonSession, RpcError, StartDaemon

ECHO_PROMPT = "Please echo back 'Something to echo'"
API_KEY = "test-key-0123"
RUN_TIMEOUT = 240.0
# How a run may end, whatever the model writes: the grammar and the loop guarantee no more.
STOP_REASONS = {"answer", "maxSteps", "maxTokens", "repetition"}


@pytest.fixture(scope="module")
def server(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "llama_cpp.server.log"
    # By default llama_cpp.server drops a running request when another arrives.
    with llama_server(default_model, "--n_threads", "2", "--interrupt_requests", "False", log=log) as url:
        yield url


@pytest.fixture
def proxy(server: str) -> Iterator[FaultProxy]:
    with FaultProxy(server) as running:
        yield running


async def remote_daemon(start: StartDaemon, tools_dir: Path, url: str, *options: str) -> DaemonSession:
    return await start(
        "--tools-dir",
        tools_dir,
        "--backend",
        "openai",
        "--base-url",
        url,
        *options,
        env={"TEST_KEY": API_KEY, "WRONG_KEY": "not-the-key"},
    )


async def run(session: DaemonSession, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await session.request("agent/run", params, timeout=RUN_TIMEOUT)
    return result


async def failure(session: DaemonSession, **params: Any) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await run(session, prompt=ECHO_PROMPT, tools=["echo"], maxTokens=48, **params)
    return caught.value


async def polled(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for a condition no notification announces (the proxy's records)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def forced_call_made(result: dict[str, Any]) -> bool:
    """Whether the forced first call was made; if not, its turn was cut (a model that never
    closes its string, on some CPU), and the cut call was not run."""
    if result["steps"]:
        return True
    assert result["stopReason"] in {"maxTokens", "repetition"}
    return False


def streamed(session: DaemonSession, token: str) -> str:
    return "".join(
        value["llamaAgent"]["text"]
        for value in session.progress(token)
        if value.get("llamaAgent", {}).get("event") == "text"
    )


async def test_a_run_through_the_server_says_which_model_answered(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)
    capabilities = session.initialize_result["capabilities"]["experimental"]["llamaAgent"]
    assert capabilities["model"] == {"backend": "openai", "name": None, "baseUrl": proxy.url}

    result = await run(
        session, prompt=ECHO_PROMPT, toolChoice="echo", maxSteps=1, maxTokens=64, workDoneToken="r1"
    )

    assert result["model"] == {"backend": "openai", "name": MODEL_ALIAS, "baseUrl": proxy.url}
    assert result["promptFormat"] == "chat"
    assert result["stopReason"] in STOP_REASONS
    # llama_cpp.server takes no `json_schema` response format: the daemon fell back to its
    # `json_object` with a schema, and kept to it.
    formats = [body["response_format"]["type"] for body in proxy.seen.bodies]
    assert formats[0] == "json_schema"
    assert set(formats[1:]) == {"json_object"}
    assert all(body["stream"] for body in proxy.seen.bodies)
    if forced_call_made(result):
        # Made with arguments the tool accepted, and streamed as it was made.
        assert [step["tool"] for step in result["steps"]] == ["echo"]
        assert not result["steps"][0]["isError"]
        first_turn, _ = json.JSONDecoder().raw_decode(streamed(session, "r1"))
        assert first_turn["tool"] == "echo"
        # The call runs with the streamed arguments, each copy of the request's text in the
        # request's own spelling (snapping: `something to echo` for `Something to echo`).
        assert snap_arguments(first_turn["arguments"], [ECHO_PROMPT]) == result["steps"][0]["arguments"]


async def test_a_server_without_structured_output_is_driven_by_native_tools(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(refuse=("response_format",))
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)

    result = await run(session, prompt=ECHO_PROMPT, toolChoice="echo", maxSteps=1, maxTokens=64)

    native = [body for body in proxy.seen.bodies if "tools" in body]
    assert native
    assert native[0]["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert [tool["function"]["name"] for tool in native[0]["tools"]] == ["echo"]
    if forced_call_made(result):
        assert [step["tool"] for step in result["steps"]] == ["echo"]
        assert not result["steps"][0]["isError"]


async def test_cancel_closes_the_stream_at_once(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    # Paced, so that the model cannot have finished by the time the cancel arrives.
    proxy.faults = Faults(pace_seconds=0.1)
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)
    params = {"prompt": "Write a long story about a dragon.", "toolChoice": "none", "maxTokens": 400}
    request_id, answer = session.request_future("agent/run", {**params, "workDoneToken": "long"})
    await session.wait_until(lambda: len(streamed(session, "long")) > 20, timeout=RUN_TIMEOUT)

    session.cancel(request_id)

    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(answer, 10)
    assert caught.value.code == REQUEST_CANCELLED
    await polled(lambda: proxy.seen.client_gone == 1, timeout=30)
    # The server is free for the next run, and tools never waited.
    assert (await session.request("tools/invoke", {"name": "echo", "arguments": {"value": "x"}}))["content"]


async def test_runs_are_in_flight_together_up_to_the_limit(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    session = await remote_daemon(start_daemon, tools_dir, proxy.url, "--max-concurrent-runs", "2")
    params = {"prompt": "Count from one to twenty.", "toolChoice": "none", "maxTokens": 24}

    results = await asyncio.gather(*(run(session, **params) for _ in range(3)))

    assert all(result["stopReason"] in STOP_REASONS for result in results)
    assert proxy.seen.most_in_flight == 2


async def test_busy_answers_are_retried_and_the_run_completes(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(fail_first=2, fail_status=503)
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)

    result = await run(session, prompt="Say hello.", toolChoice="none", maxTokens=24)

    assert result["stopReason"] in STOP_REASONS
    # The model list; two busy answers; llama_cpp.server's refusal of `json_schema` (not retried,
    # the next form is tried); the turn.
    assert proxy.seen.statuses == [200, 503, 503, 500, 200]


async def test_a_stream_broken_off_is_a_clear_error_and_tools_are_unaffected(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(cut_after_events=4)
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)

    error = await failure(session)

    assert error.code == MODEL_UNAVAILABLE
    assert proxy.url.removesuffix("/v1") in error.message
    assert "broke off a turn" in error.message
    assert "the model crashed" in error.message
    called = await session.request("tools/invoke", {"name": "echo", "arguments": {"value": "still here"}})
    assert called["content"][0]["text"] == "still here"


async def test_text_outside_the_schema_is_refused_not_run(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(replace_content='{"tool": "echo", "arguments": {"text": 5}}')
    session = await remote_daemon(start_daemon, tools_dir, proxy.url)

    error = await failure(session, toolChoice="echo")

    assert error.code == MODEL_UNAVAILABLE
    assert "schema does not allow" in error.message
    assert "response_format" in error.message


async def test_a_stalled_server_times_out_clearly(
    start_daemon: StartDaemon, tools_dir: Path, proxy: FaultProxy
) -> None:
    proxy.faults = Faults(stall_seconds=3)
    session = await remote_daemon(start_daemon, tools_dir, proxy.url, "--request-timeout", "1")

    error = await failure(session)

    assert "sent nothing for 1 s" in error.message
    assert "--request-timeout" in error.message


async def test_no_server_is_a_clear_error(start_daemon: StartDaemon, tools_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    session = await remote_daemon(start_daemon, tools_dir, url)

    error = await failure(session)

    assert error.code == MODEL_UNAVAILABLE
    assert f"cannot reach the model server at {url}" in error.message
    assert "--base-url" in error.message
    assert (await session.request("tools/list"))["tools"]


async def test_an_unknown_model_names_the_ones_served(
    start_daemon: StartDaemon, tools_dir: Path, server: str
) -> None:
    session = await remote_daemon(start_daemon, tools_dir, server, "--model", "no-such-model")

    error = await failure(session)

    assert "no model 'no-such-model'" in error.message
    assert MODEL_ALIAS in error.message


async def test_a_server_that_wants_a_key(
    start_daemon: StartDaemon, tools_dir: Path, default_model: Path
) -> None:
    with llama_server(default_model, "--api_key", API_KEY) as url:
        without = await remote_daemon(start_daemon, tools_dir, url)
        wrong = await remote_daemon(start_daemon, tools_dir, url, "--api-key-env", "WRONG_KEY")
        right = await remote_daemon(start_daemon, tools_dir, url, "--api-key-env", "TEST_KEY")

        assert "HTTP 401" in (await failure(without)).message
        assert "--api-key-env" in (await failure(without)).message
        assert "check the key in $WRONG_KEY" in (await failure(wrong)).message
        result = await run(right, prompt="Say hello.", toolChoice="none", maxTokens=8)
        assert result["model"]["name"] == MODEL_ALIAS
