"""agent/run over stdio in the real daemon, with a scripted model in place of llama.cpp.

The protocol, queueing, progress and cancellation are the daemon's own; only the model's turns
are written by the test, so exact results and exact timing-independent orderings can be asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from llama_agent.common.errors import REQUEST_CANCELLED

from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.scripted_model import answer, call, recorded
from tests.wat_tools import tool_wasm

# A long answer: at 10 ms a token, it would stream for about a minute.
LONG_ANSWER = json.dumps({"answer": "word " * 6000})


def texts(daemon: DaemonSession, token: str) -> list[str]:
    return [
        v["llamaAgent"]["text"]
        for v in daemon.progress(token)
        if v.get("llamaAgent", {}).get("event") == "text"
    ]


async def scripted(
    start_daemon: StartDaemon,
    tools_dir: Path,
    tmp_path: Path,
    *turns: str,
    delay: float = 0.0,
    context_size: int = 4096,
) -> tuple[DaemonSession, Path]:
    """A daemon on `tools_dir` whose model plays `turns`; the log of what it was asked."""
    log = tmp_path / "model-requests.jsonl"
    script = {
        "turns": list(turns),
        "pieceSize": 4,
        "pieceDelay": delay,
        "log": str(log),
        "contextSize": context_size,
    }
    return await start_daemon("--tools-dir", tools_dir, script=script), log


async def test_results_and_progress_follow_the_models_turns_exactly(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(
        start_daemon,
        tools_dir,
        tmp_path,
        call("echo", value="Something to echo"),
        call("print", message='she said "hi"\nthen left'),
        answer("Echoed and printed."),
    )
    result = await daemon.request("agent/run", {"prompt": "go", "workDoneToken": "t", "seed": 5})
    assert result == {
        "answer": "Echoed and printed.",
        "steps": [
            {
                "tool": "echo",
                "arguments": {"value": "Something to echo"},
                "result": "Something to echo",
                "isError": False,
            },
            {
                "tool": "print",
                "arguments": {"message": 'she said "hi"\nthen left'},
                "result": 'she said "hi"\nthen left\n',
                "isError": False,
            },
        ],
        "usage": result["usage"],
        "timings": result["timings"],
        "stopReason": "answer",
        "promptFormat": "completion",
        "model": {"backend": "llama", "name": "scripted.gguf", "baseUrl": None},
        "sessionId": None,
    }
    requests = recorded(log)
    assert result["usage"]["completionTokens"] == sum(r["pieces"] for r in requests)
    assert [r["seed"] for r in requests] == [5, 5, 5]

    values = daemon.progress("t")
    assert [v["kind"] for v in values[:1] + values[-1:]] == ["begin", "end"]
    assert values[0]["message"] == "go"
    assert values[-1]["message"] == "done (answer)"
    events = [v["llamaAgent"] for v in values[1:-1]]
    assert [e for e in events if e["event"] != "text"] == [
        {"event": "toolCall", "step": 0, "tool": "echo", "arguments": {"value": "Something to echo"}},
        {"event": "toolResult", "step": 0, "tool": "echo", "result": "Something to echo", "isError": False},
        {
            "event": "toolCall",
            "step": 1,
            "tool": "print",
            "arguments": {"message": 'she said "hi"\nthen left'},
        },
        {
            "event": "toolResult",
            "step": 1,
            "tool": "print",
            "result": 'she said "hi"\nthen left\n',
            "isError": False,
        },
    ]
    assert "".join(texts(daemon, "t")) == "".join(
        [
            call("echo", value="Something to echo"),
            call("print", message='she said "hi"\nthen left'),
            answer("Echoed and printed."),
        ]
    )
    # The messages read well on their own: what the model is doing, then the answer as it grows.
    messages = [v["message"] for v in values[1:-1] if v["llamaAgent"]["event"] == "text"]
    assert set(messages) <= {"thinking…", "calling echo…", "calling print…"} | {
        "Echoed and printed."[:n] for n in range(20)
    }
    assert messages[-1] == "Echoed and printed."
    assert {"calling echo…", "calling print…"} <= set(messages)


async def test_cancel_stops_generation_at_the_next_token(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(start_daemon, tools_dir, tmp_path, LONG_ANSWER, answer("next"), delay=0.01)
    request_id, run = daemon.request_future(
        "agent/run", {"prompt": "talk", "maxTokens": 10000, "workDoneToken": "c"}
    )
    await daemon.wait_until(lambda: bool(texts(daemon, "c")), timeout=30)
    cancelled_at = time.perf_counter()
    daemon.cancel(request_id)
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(run, 10)
    assert raised.value.code == REQUEST_CANCELLED
    assert time.perf_counter() - cancelled_at < 1.0
    # The progress ends, and nothing follows its end.
    await daemon.wait_until(lambda: daemon.progress("c")[-1]["kind"] == "end", timeout=5)
    ended_with = len(daemon.progress("c"))
    await asyncio.sleep(0.3)
    assert len(daemon.progress("c")) == ended_with

    following = await daemon.request("agent/run", {"prompt": "again"}, timeout=10)
    assert following["answer"] == "next"
    cut = recorded(log)[0]
    assert cut["stop_reason"] == "cancelled"
    assert cut["pieces"] < 300  # of the 7,500 it would have streamed


async def test_cancel_during_a_blocked_tool_call_ends_the_run_and_the_call(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    (tools_dir / "nap.wasm").write_bytes(tool_wasm("nap", behaviour="sleep"))
    daemon, _ = await scripted(start_daemon, tools_dir, tmp_path, call("nap", value="x"), answer("next"))
    await daemon.request("tools/list")
    request_id, run = daemon.request_future("agent/run", {"prompt": "nap", "workDoneToken": "n"})
    await daemon.wait_until(lambda: bool(daemon.worker_pids()) and bool(texts(daemon, "n")), timeout=30)
    await asyncio.sleep(0.5)  # the call is blocked in its worker now (60 s, past the 10 s deadline)
    before = set(daemon.worker_pids())
    cancelled_at = time.perf_counter()
    daemon.cancel(request_id)
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(run, 10)
    assert raised.value.code == REQUEST_CANCELLED
    assert time.perf_counter() - cancelled_at < 1.0
    for _ in range(50):  # the blocked call's worker is killed (reaped within moments)
        if not before <= set(daemon.worker_pids()):
            break
        await asyncio.sleep(0.1)
    assert not before <= set(daemon.worker_pids())
    following = await daemon.request("agent/run", {"prompt": "again"}, timeout=10)
    assert following["answer"] == "next"


async def test_tools_are_served_while_the_model_generates(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, _ = await scripted(start_daemon, tools_dir, tmp_path, LONG_ANSWER, delay=0.01)
    request_id, run = daemon.request_future(
        "agent/run", {"prompt": "talk", "maxTokens": 10000, "workDoneToken": "g"}
    )
    await daemon.wait_until(lambda: bool(texts(daemon, "g")), timeout=30)
    listed = await daemon.request("tools/list")
    echoed = await daemon.request("tools/invoke", {"name": "echo", "arguments": {"value": "meanwhile"}})
    streamed_before = len(texts(daemon, "g"))
    await daemon.wait_until(lambda: len(texts(daemon, "g")) > streamed_before + 5, timeout=30)
    assert not run.done(), "the generation is still running"
    assert {tool["name"] for tool in listed["tools"]} == {"echo", "print"}
    assert echoed["content"][0]["text"] == "meanwhile"
    daemon.cancel(request_id)
    with pytest.raises(RpcError):
        await asyncio.wait_for(run, 10)


async def test_runs_are_queued_and_served_in_arrival_order(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    turns = [answer(f"run {n} " + "x" * 40) for n in range(3)]
    daemon, log = await scripted(start_daemon, tools_dir, tmp_path, *turns, delay=0.01)
    runs = [
        daemon.request_future("agent/run", {"prompt": f"run {n}", "workDoneToken": n})[1] for n in range(3)
    ]
    results = await asyncio.wait_for(asyncio.gather(*runs), 60)
    assert [r["answer"] for r in results] == [f"run {n} " + "x" * 40 for n in range(3)]
    assert [r["prompt"].rsplit("User: ", 1)[1] for r in recorded(log)] == [
        f"run {n}\nAssistant: " for n in range(3)
    ]
    # Each run streams only after the previous one ended: no interleaving.
    order = [
        (message["params"]["token"], message["params"]["value"]["kind"])
        for message in daemon.notifications
        if (message["method"] == "$/progress" and message["params"]["value"]["kind"] == "report")
        or (message["method"] == "$/progress" and message["params"]["value"]["kind"] == "end")
    ]
    tokens_in_order = [token for token, _ in order]
    assert tokens_in_order == sorted(tokens_in_order)


async def test_timings_split_each_turn_at_its_first_token(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    delay = 0.05  # before every piece: each turn's first piece comes `delay` after its start
    turns = (call("echo", value="hi"), answer("hi"))
    daemon, log = await scripted(start_daemon, tools_dir, tmp_path, *turns, delay=delay)
    started = time.perf_counter()
    result = await daemon.request("agent/run", {"prompt": "Please echo 'hi'"})
    wall = time.perf_counter() - started
    pieces = [request["pieces"] for request in recorded(log)]
    seconds = {key.removesuffix("Ms"): value / 1000 for key, value in result["timings"].items()}
    assert seconds["prompt"] >= len(turns) * delay
    assert seconds["generation"] >= (sum(pieces) - len(turns)) * delay
    # The first turn's first piece, long before that turn's last one.
    assert delay <= seconds["firstToken"] < pieces[0] * delay
    assert seconds["firstToken"] + seconds["generation"] <= wall
    assert result["usage"]["cachedPromptTokens"] == 0  # the scripted model evaluates nothing
