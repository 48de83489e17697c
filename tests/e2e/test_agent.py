"""agent/run over stdio with the real embedded model (temperature 0, fixed seed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.rpc import DaemonSession, RpcError
from tests.wat_tools import tool_wasm

ECHO_PROMPT = "Please echo back 'Something to echo'"
REQUEST_CANCELLED = -32800
INVALID_PARAMS = -32602
MODEL_UNAVAILABLE = -32010


async def agent_daemon(start_daemon: StartDaemon, tools_dir: Path, *extra: str | Path) -> DaemonSession:
    daemon = await start_daemon("--tools-dir", tools_dir, *extra)
    await daemon.initialize()
    return daemon


def progress_values(daemon: DaemonSession, token: str) -> list[dict[str, Any]]:
    return [
        message["params"]["value"]
        for message in daemon.notifications
        if message["method"] == "$/progress" and message["params"]["token"] == token
    ]


async def test_echo_prompt_passes_the_whole_string_to_the_tool(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "temperature": 0, "seed": 1})
    assert result["steps"][0] == {
        "tool": "echo",
        "arguments": {"value": "Something to echo"},
        "result": "Something to echo",
        "isError": False,
    }
    assert "Something to echo" in result["answer"]
    assert result["stopReason"] == "answer"
    assert result["usage"]["promptTokens"] > 100
    assert result["usage"]["completionTokens"] > 10


async def test_progress_streams_text_tool_calls_and_results(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "workDoneToken": "run-1"})
    values = progress_values(daemon, "run-1")
    assert values[0]["kind"] == "begin"
    assert values[-1]["kind"] == "end"
    events = [value["llamaAgent"] for value in values if value["kind"] == "report"]
    streamed = "".join(event["text"] for event in events if event["event"] == "text")
    assert '"tool": "echo"' in streamed
    assert '"Something to echo"' in streamed
    calls = [event for event in events if event["event"] == "toolCall"]
    results = [event for event in events if event["event"] == "toolResult"]
    assert calls == [
        {"event": "toolCall", "step": 0, "tool": "echo", "arguments": {"value": "Something to echo"}}
    ]
    assert results[0]["result"] == "Something to echo"
    assert results[0]["isError"] is False
    assert len(result["steps"]) == 1


async def test_max_steps_is_honoured(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    none = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 0})
    assert none["steps"] == []
    assert none["stopReason"] == "maxSteps"
    one = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 1})
    assert len(one["steps"]) <= 1


async def test_a_tool_error_is_fed_back_and_the_run_completes(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    (tools_dir / "lookup.wasm").write_bytes(
        tool_wasm("lookup", description="Looks a word up in the dictionary.", behaviour="fail")
    )
    daemon = await agent_daemon(start_daemon, tools_dir)
    result = await daemon.request(
        "agent/run",
        {"prompt": "Please use lookup on 'llama'", "tools": ["lookup"], "maxSteps": 2, "workDoneToken": "t"},
    )
    assert result["steps"], "the model should have called lookup"
    first = result["steps"][0]
    assert first["tool"] == "lookup"
    assert first["isError"] is True
    assert first["result"] == "lookup failed on purpose"
    assert result["stopReason"] in ("answer", "maxSteps")
    assert len(result["steps"]) <= 2


async def test_cancel_stops_generation_promptly_and_the_model_stays_usable(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    request_id, long_run = daemon.request_future(
        "agent/run",
        {
            "prompt": "Count from 1 to 500, separated by commas.",
            "tools": [],
            "maxTokens": 2000,
            "workDoneToken": "c",
        },
    )
    while not any(
        value.get("llamaAgent", {}).get("event") == "text" for value in progress_values(daemon, "c")
    ):
        await asyncio.sleep(0.05)
    cancelled_at = time.perf_counter()
    daemon.cancel(request_id)
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(long_run, 30)
    assert raised.value.code == REQUEST_CANCELLED
    assert time.perf_counter() - cancelled_at < 3.0

    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT})
    assert result["steps"][0]["arguments"] == {"value": "Something to echo"}


async def test_tools_stay_responsive_and_runs_queue_in_order(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    _, first = daemon.request_future(
        "agent/run",
        {
            "prompt": "Count from 1 to 500, separated by commas.",
            "tools": [],
            "maxTokens": 60,
            "workDoneToken": "a",
        },
    )
    _, second = daemon.request_future("agent/run", {"prompt": ECHO_PROMPT, "workDoneToken": "b"})
    while not progress_values(daemon, "a")[1:]:
        await asyncio.sleep(0.05)
    listed = await daemon.request("tools/list")
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "meanwhile"}})
    assert not first.done(), "generation should still be running"
    assert {tool["name"] for tool in listed["tools"]} >= {"echo", "print"}
    assert echoed["content"][0]["text"] == "meanwhile"

    first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 300)
    assert first_result["stopReason"] == "maxTokens"
    assert second_result["steps"][0]["tool"] == "echo"
    # The second run began only after the first ended.
    order = [
        (message["params"]["token"], message["params"]["value"]["kind"])
        for message in daemon.notifications
        if message["method"] == "$/progress" and message["params"]["value"]["kind"] != "begin"
    ]
    assert order.index(("a", "end")) < next(i for i, item in enumerate(order) if item[0] == "b")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "model file not found"), (b"this is not a model", "is not a GGUF model file")],
)
async def test_a_bad_model_file_fails_agent_run_clearly_and_tools_keep_working(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    model = tmp_path / "model.gguf"
    if content is not None:
        model.write_bytes(content)
    daemon = await agent_daemon(start_daemon, tools_dir, "--model", model)
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", {"prompt": ECHO_PROMPT})
    assert raised.value.code == MODEL_UNAVAILABLE
    assert fragment in raised.value.message
    assert str(model) in raised.value.message
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "fine"}})
    assert echoed["content"][0]["text"] == "fine"


async def test_model_load_is_reported_as_progress(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir, eager_model=True)
    await daemon.initialize(capabilities={"window": {"workDoneProgress": True}})
    create = await daemon.wait_for_notification("window/workDoneProgress/create")
    token = create["params"]["token"]
    await daemon.wait_for_notification("$/progress")
    for _ in range(600):
        kinds = [value["kind"] for value in progress_values(daemon, token)]
        if "end" in kinds:
            break
        await asyncio.sleep(0.05)
    assert kinds == ["begin", "end"]
    assert progress_values(daemon, token)[0]["title"] == "Loading model"
    assert "loaded" in progress_values(daemon, token)[1]["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "maxSteps": -1}, "maxSteps"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": "x", "tools": ["nope"]}, "tools"),
        ({"prompt": "x", "colour": 1}, "colour"),
    ],
)
async def test_bad_agent_run_params_name_the_field(
    start_daemon: StartDaemon, tools_dir: Path, params: dict[str, Any], field: str
) -> None:
    daemon = await agent_daemon(start_daemon, tools_dir)
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", params)
    assert raised.value.code == INVALID_PARAMS
    assert raised.value.data["field"] == field


async def test_a_model_with_a_chat_template_is_prompted_through_it(
    start_daemon: StartDaemon, tools_dir: Path, templated_model: Path
) -> None:
    templated = await agent_daemon(start_daemon, tools_dir, "--model", templated_model)
    result = await templated.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 1})
    assert result["promptFormat"] == "chatTemplate"
    assert result["stopReason"] in ("answer", "maxSteps")
    assert all(step["tool"] in ("echo", "print") for step in result["steps"])

    plain = await agent_daemon(start_daemon, tools_dir)
    assert (await plain.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 0}))[
        "promptFormat"
    ] == "completion"
