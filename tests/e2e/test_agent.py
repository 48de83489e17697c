"""agent/run over stdio with the real embedded model.

A small model's wording differs between CPUs (llama.cpp is compiled for the one it is built on),
so these tests assert only what the design guarantees on any machine: every turn parses and
matches the grammar, a forced call happens, a string argument reaches the tool whole, the
streamed text is the result, stop reasons, progress shape, errors. What the model chooses to
say is measured by `make eval`, never asserted here; the loop's logic is tested with a scripted
model (tests/unit/test_agent_loop.py, tests/e2e/test_agent_scripted.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS, MODEL_UNAVAILABLE, PROMPT_TOO_LONG, REQUEST_CANCELLED

from tests.factories import ToolsDirFactory
from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.wat_tools import tool_wasm

ECHO_PROMPT = "Please echo back 'Something to echo'"
STOP_REASONS = {"answer", "maxSteps", "maxTokens"}


def streamed_turns(values: list[dict[str, Any]]) -> list[str]:
    """The model's turns as streamed: text events, split where a tool call was made."""
    turns = [""]
    for value in values:
        event = value.get("llamaAgent", {})
        if event.get("event") == "text":
            turns[-1] += event["text"]
        elif event.get("event") == "toolCall":
            turns.append("")
    return [turn.strip() for turn in turns]


def assert_structure(result: dict[str, Any], offered: set[str]) -> None:
    """What holds for every run, whatever the model wrote."""
    assert result["stopReason"] in STOP_REASONS
    assert isinstance(result["answer"], str)
    usage, timings = result["usage"], result["timings"]
    assert usage["promptTokens"] > 0
    assert usage["completionTokens"] > 0
    # Every turn evaluates at least its last prompt token (for the logits it picks from).
    assert 0 <= usage["cachedPromptTokens"] < usage["promptTokens"]
    assert min(timings["routingMs"], timings["promptMs"], timings["generationMs"]) >= 0
    assert timings["firstTokenMs"] >= timings["routingMs"]
    for step in result["steps"]:
        assert step["tool"] in offered
        assert isinstance(step["arguments"], dict)


async def test_a_forced_call_passes_the_whole_string_and_the_stream_is_the_result(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    started = time.perf_counter()
    result = await daemon.request(
        "agent/run",
        {"prompt": ECHO_PROMPT, "toolChoice": "echo", "maxTokens": 1024, "workDoneToken": "run-1"},
    )
    wall_ms = (time.perf_counter() - started) * 1000
    assert_structure(result, {"echo", "print"})
    timings = result["timings"]
    assert timings["firstTokenMs"] + timings["generationMs"] <= wall_ms
    values = daemon.progress("run-1")
    turns = streamed_turns(values)
    if not result["steps"]:
        # Nothing bounds the string's length: a model that never closes it is cut at maxTokens,
        # and a call that never finished is never run.
        assert result["stopReason"] == "maxTokens"
        assert '"echo"' in turns[0]
        return
    # The answer's prompt starts with the call's: the context still holds that part.
    assert result["usage"]["cachedPromptTokens"] > 0
    first = result["steps"][0]
    assert first["tool"] == "echo"
    assert first["isError"] is False
    # Whatever string the model wrote is what the tool received and returned, to the last character.
    assert isinstance(first["arguments"]["value"], str)
    assert first["result"] == first["arguments"]["value"]

    assert values[0]["kind"] == "begin"
    assert values[-1]["kind"] == "end"
    assert all(value["kind"] == "report" for value in values[1:-1])
    assert all(isinstance(value["message"], str) for value in values[1:-1])
    events = [value["llamaAgent"] for value in values[1:-1]]
    calls = [event for event in events if event["event"] == "toolCall"]
    results = [event for event in events if event["event"] == "toolResult"]
    assert [(c["step"], c["tool"], c["arguments"]) for c in calls] == [
        (index, step["tool"], step["arguments"]) for index, step in enumerate(result["steps"])
    ]
    assert [(r["step"], r["result"], r["isError"]) for r in results] == [
        (index, step["result"], step["isError"]) for index, step in enumerate(result["steps"])
    ]
    # Each streamed turn is exactly the call that was made, and the last one the answer.
    assert len(turns) == len(result["steps"]) + 1
    for turn, step in zip(turns, result["steps"], strict=False):
        assert json.loads(turn) == {"tool": step["tool"], "arguments": step["arguments"]}
    if result["stopReason"] != "maxTokens":
        assert json.loads(turns[-1]) == {"answer": result["answer"]}


async def test_the_default_run_only_makes_valid_calls(start_daemon: StartDaemon, tools_dir: Path) -> None:
    """The `make run` demo, unforced: whichever tools the model calls, each call is well-formed."""
    daemon = await start_daemon("--tools-dir", tools_dir)
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT})
    assert_structure(result, {"echo", "print"})
    assert len(result["steps"]) <= 5
    for step in result["steps"]:
        # echo and print cannot fail on arguments that match their schema.
        assert step["isError"] is False, step
        assert list(step["arguments"]) == ["value" if step["tool"] == "echo" else "message"]


async def test_max_tokens_cuts_the_turn(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    # No single token is a whole turn: the shortest is `{"answer":""}`.
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "maxTokens": 1})
    assert (result["stopReason"], result["steps"]) == ("maxTokens", [])
    assert result["usage"]["completionTokens"] == 1


def add_tool(tools_dir: Path, name: str, behaviour: str, description: str = "a test tool") -> None:
    """A WAT tool without parameters: a forced call to it is `{"tool": NAME, "arguments": {}}`."""
    (tools_dir / f"{name}.wasm").write_bytes(
        tool_wasm(name, description=description, params=(), behaviour=behaviour)
    )


async def test_max_steps_bounds_the_calls(start_daemon: StartDaemon, tools_dir: Path) -> None:
    add_tool(tools_dir, "ping", "version", "Answers ping.")
    daemon = await start_daemon("--tools-dir", tools_dir)
    none = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 0})
    assert none["steps"] == []
    assert none["stopReason"] in ("maxSteps", "maxTokens")
    # A forced first call (of a tool without parameters, so the call is a few tokens whatever the
    # model), then only an answer is allowed: exactly one step.
    one = await daemon.request(
        "agent/run", {"prompt": "Ping, please.", "tools": ["ping"], "maxSteps": 1, "toolChoice": "required"}
    )
    assert [step["tool"] for step in one["steps"]] == ["ping"]
    assert one["steps"][0]["result"] == "ping 1.0.0"
    assert one["stopReason"] in ("maxSteps", "maxTokens")


async def test_tool_choice_none_makes_no_call(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "toolChoice": "none"})
    assert result["steps"] == []
    assert result["stopReason"] in ("answer", "maxTokens")


async def test_a_tool_error_is_fed_back_and_the_run_completes(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    add_tool(tools_dir, "lookup", "fail", "Looks a word up in the dictionary.")
    daemon = await start_daemon("--tools-dir", tools_dir)
    result = await daemon.request(
        "agent/run",
        {
            "prompt": "Please use lookup on 'llama'",
            "tools": ["lookup"],
            "maxSteps": 2,
            "toolChoice": "lookup",
        },
    )
    assert_structure(result, {"lookup"})
    first = result["steps"][0]
    assert (first["tool"], first["isError"], first["result"]) == ("lookup", True, "lookup failed on purpose")
    assert len(result["steps"]) <= 2


async def spinning_daemon(start_daemon: StartDaemon, tools_dir: Path, timeout: str) -> DaemonSession:
    add_tool(tools_dir, "spins", "loop", "Spins.")
    return await start_daemon("--tools-dir", tools_dir, "--tool-timeout", timeout)


def spin_run(daemon: DaemonSession, token: str) -> tuple[int, asyncio.Future[Any]]:
    """A run held inside a tool call: the first turn must call `spins`, which runs until its timeout."""
    return daemon.request_future(
        "agent/run",
        {"prompt": "Spin, please.", "toolChoice": "spins", "maxSteps": 1, "workDoneToken": token},
    )


async def until_event(daemon: DaemonSession, token: str, event: str) -> None:
    await daemon.wait_until(
        lambda: any(v.get("llamaAgent", {}).get("event") == event for v in daemon.progress(token)), 120
    )


async def test_cancel_answers_promptly_and_the_model_serves_the_next_run(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await spinning_daemon(start_daemon, tools_dir, "30")
    running_id, running = spin_run(daemon, "spin")
    queued_id, queued = daemon.request_future("agent/run", {"prompt": ECHO_PROMPT, "workDoneToken": "queued"})
    await until_event(daemon, "spin", "toolCall")

    for request_id, future in ((queued_id, queued), (running_id, running)):
        cancelled_at = time.perf_counter()
        daemon.cancel(request_id)
        with pytest.raises(RpcError) as raised:
            await asyncio.wait_for(future, 30)
        assert raised.value.code == REQUEST_CANCELLED
        assert time.perf_counter() - cancelled_at < 3.0
    # The queued run's progress ends too (the end may follow the -32800 answer).
    await daemon.wait_until(lambda: daemon.progress("queued")[-1]["kind"] == "end", 5)

    # The tool is still spinning on its worker, but the model is free.
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "maxTokens": 1}, timeout=60)
    assert result["stopReason"] == "maxTokens"


@pytest.mark.parametrize("parallel_runs", [1, 2])
async def test_tools_stay_responsive_and_runs_queue_or_go_on_together(
    start_daemon: StartDaemon, tools_dir: Path, parallel_runs: int
) -> None:
    """By default runs take turns at the model; with --max-concurrent-runs 2 the second run's turn
    is decoded while the first waits for its tool."""
    add_tool(tools_dir, "spins", "loop", "Spins.")
    daemon = await start_daemon(
        "--tools-dir", tools_dir, "--tool-timeout", "3", "--max-concurrent-runs", str(parallel_runs)
    )
    _, first = spin_run(daemon, "a")
    _, second = daemon.request_future(
        "agent/run", {"prompt": ECHO_PROMPT, "maxTokens": 1, "workDoneToken": "b"}
    )
    await until_event(daemon, "a", "toolCall")
    listed = await daemon.request("tools/list")
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "meanwhile"}})
    assert not first.done()
    if parallel_runs == 1:
        assert not second.done()  # queued behind the first
    assert {tool["name"] for tool in listed["tools"]} == {"echo", "print", "spins"}
    assert echoed["content"][0]["text"] == "meanwhile"

    first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 300)
    spun = first_result["steps"][0]
    assert (spun["tool"], spun["isError"]) == ("spins", True)
    assert "timed out after 3 s" in spun["result"]
    assert second_result["stopReason"] == "maxTokens"
    order = [
        (message["params"]["token"], message["params"]["value"]["kind"])
        for message in daemon.notifications
        if message["method"] == "$/progress" and message["params"]["value"]["kind"] != "begin"
    ]
    second_starts = next(i for i, item in enumerate(order) if item[0] == "b")
    if parallel_runs == 1:  # the second run's model turn began only after the first run ended
        assert order.index(("a", "end")) < second_starts
    else:  # ... or while the first run waited for its tool: both decoded as sequences of one batch
        assert second_starts < order.index(("a", "end"))


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
    daemon = await start_daemon("--tools-dir", tools_dir, "--model", model)
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", {"prompt": ECHO_PROMPT})
    assert raised.value.code == MODEL_UNAVAILABLE
    assert fragment in raised.value.message
    assert str(model) in raised.value.message
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "fine"}})
    assert echoed["content"][0]["text"] == "fine"


async def test_a_prompt_longer_than_the_context_is_its_own_error(
    start_daemon: StartDaemon, tools_dir: Path
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir, "--context-size", "128")
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", {"prompt": ECHO_PROMPT})
    assert raised.value.code == PROMPT_TOO_LONG
    assert raised.value.data["contextSize"] == 128
    assert raised.value.data["promptTokens"] > 128
    assert "--context-size" in raised.value.message
    # The model itself is fine: a run with no tools on offer has a short prompt.
    result = await daemon.request("agent/run", {"prompt": ECHO_PROMPT, "toolChoice": "none", "maxTokens": 1})
    assert result["stopReason"] == "maxTokens"


async def test_model_load_is_reported_as_progress(start_daemon: StartDaemon, tools_dir: Path) -> None:
    daemon = await start_daemon(
        "--tools-dir",
        tools_dir,
        eager_model=True,
        init_params={"capabilities": {"window": {"workDoneProgress": True}}},
    )
    create = await daemon.wait_for_notification("window/workDoneProgress/create")
    token = create["params"]["token"]
    await daemon.wait_for_notification("$/progress")
    for _ in range(600):
        kinds = [value["kind"] for value in daemon.progress(token)]
        if "end" in kinds:
            break
        await asyncio.sleep(0.05)
    assert kinds == ["begin", "end"]
    assert daemon.progress(token)[0]["title"] == "Loading model"
    assert "loaded" in daemon.progress(token)[1]["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "maxSteps": -1}, "maxSteps"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": "x", "tools": ["nope"]}, "tools"),
        ({"prompt": "x", "toolChoice": 3}, "toolChoice"),
        ({"prompt": "x", "toolChoice": "nope"}, "toolChoice"),
        ({"prompt": "x", "tools": ["echo"], "toolChoice": "print"}, "toolChoice"),
        ({"prompt": "x", "colour": 1}, "colour"),
    ],
)
async def test_bad_agent_run_params_name_the_field(
    start_daemon: StartDaemon, tools_dir: Path, params: dict[str, Any], field: str
) -> None:
    daemon = await start_daemon("--tools-dir", tools_dir)
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", params)
    assert raised.value.code == INVALID_PARAMS
    assert raised.value.data["field"] == field


async def test_a_model_with_a_chat_template_is_prompted_through_it(
    start_daemon: StartDaemon, tools_dir: Path, templated_model: Path
) -> None:
    add_tool(tools_dir, "ping", "version", "Answers ping.")
    templated = await start_daemon("--tools-dir", tools_dir, "--model", templated_model)
    result = await templated.request(
        "agent/run", {"prompt": "Ping, please.", "maxSteps": 1, "toolChoice": "ping"}
    )
    assert result["promptFormat"] == "chatTemplate"
    assert_structure(result, {"echo", "print", "ping"})
    assert [(step["tool"], step["result"]) for step in result["steps"]] == [("ping", "ping 1.0.0")]

    plain = await start_daemon("--tools-dir", tools_dir)
    assert (await plain.request("agent/run", {"prompt": ECHO_PROMPT, "maxSteps": 0}))[
        "promptFormat"
    ] == "completion"


async def test_a_conversation_that_outgrows_the_context_goes_on_and_reuses_its_start(
    start_daemon: StartDaemon, make_tools_dir: ToolsDirFactory, tmp_path: Path
) -> None:
    """Each turn reads a file of 8,000 characters into a context of 1,536 tokens: its result is
    cut to fit, the oldest turns give way, and no turn fails with -32011. Each follow-up reuses
    the start it shares with the prompt before it."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for i in range(5):
        lines = [f"line {n} of part {i}: the quick brown fox jumps over the lazy dog" for n in range(140)]
        (workspace / f"part{i}.txt").write_text("\n".join(lines), encoding="utf-8")
    tools = make_tools_dir("read_file", policies={"read_file": 'workspace = "ro"'})
    daemon = await start_daemon(
        "--trusted-tools-dir", tools, "--workspace", workspace, "--context-size", "1536"
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    for i in range(5):
        params = {"prompt": f"Read part{i}.txt", "sessionId": session_id, "toolChoice": "read_file"}
        result = await daemon.request("agent/run", {**params, "maxSteps": 1, "maxTokens": 96})
        assert_structure(result, {"read_file"})
        assert result["sessionId"] == session_id
        assert len(result["steps"][0]["result"]) > 8000, result  # the client gets the result whole
        if i:
            assert result["usage"]["cachedPromptTokens"] > 0
    history = await daemon.request("agent/history", {"sessionId": session_id})
    assert [turn["request"] for turn in history["turns"]] == [f"Read part{i}.txt" for i in range(5)]
    assert {turn["outcome"] for turn in history["turns"]} <= {"answered", "stopped"}
    assert history["windowStart"] > 0
