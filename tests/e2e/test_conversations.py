"""Conversations over agent/run in the real daemon, with a scripted model: a run in a session sees
the turns before it, a cancelled turn is recorded and never answered after the fact, a long
conversation stays within the model's context.

The model's turns are written by the test; what is asserted is what the daemon showed the model
(its recorded prompts) and what it answered the client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS, REQUEST_CANCELLED

from tests.e2e.test_agent_scripted import scripted
from tests.factories import ToolsDirFactory
from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.scripted_model import answer, call, recorded

LONG_ANSWER = json.dumps({"answer": "word " * 6000})


def prompts(log: Path) -> list[str]:
    return [request["prompt"] for request in recorded(log)]


async def test_a_run_in_a_session_sees_the_earlier_requests_calls_results_and_answers(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(
        start_daemon,
        tools_dir,
        tmp_path,
        call("echo", value="alpha beta"),
        answer("It said: alpha beta"),
        answer("The second word is beta."),
        answer("No idea."),
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    first = await daemon.request("agent/run", {"prompt": "Echo alpha beta", "sessionId": session_id})
    assert first["sessionId"] == session_id
    assert first["usage"]["historyTurns"] == 0
    second = await daemon.request("agent/run", {"prompt": "And its second word?", "sessionId": session_id})
    assert second["answer"] == "The second word is beta."
    assert second["usage"]["historyTurns"] == 1
    alone = await daemon.request("agent/run", {"prompt": "And its second word?"})
    assert alone["sessionId"] is None

    follow_up, unrelated = prompts(log)[2:]
    shown = (
        "User: Echo alpha beta\n"
        'Assistant: {"tool": "echo", "arguments": {"value": "alpha beta"}}\n'
        'Result: "alpha beta"\n'
        'Assistant: {"answer": "It said: alpha beta"}\n\n'
        "User: And its second word?\nAssistant: "
    )
    assert follow_up.endswith(shown)
    assert "Echo alpha beta" not in unrelated  # a run outside the session starts from nothing

    history = await daemon.request("agent/history", {"sessionId": session_id})
    assert [(t["request"], t["outcome"], t["answer"]) for t in history["turns"]] == [
        ("Echo alpha beta", "answered", "It said: alpha beta"),
        ("And its second word?", "answered", "The second word is beta."),
    ]
    assert history["turns"][0]["steps"] == first["steps"]


async def test_a_new_session_on_the_first_run_and_bad_session_params(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(start_daemon, tools_dir, tmp_path, answer("one"), answer("two"))
    first = await daemon.request("agent/run", {"prompt": "first", "session": "new"})
    assert isinstance(first["sessionId"], str) and first["sessionId"]
    await daemon.request("agent/run", {"prompt": "second", "sessionId": first["sessionId"]})
    assert 'User: first\nAssistant: {"answer": "one"}\n\nUser: second' in prompts(log)[1]

    bad: list[dict[str, Any]] = [
        {"prompt": "x", "sessionId": "nobody-made-this"},
        {"prompt": "x", "sessionId": first["sessionId"], "session": "new"},
        {"prompt": "x", "session": "old"},
        {"prompt": "x", "sessionId": ""},
    ]
    for params in bad:
        with pytest.raises(RpcError) as raised:
            await daemon.request("agent/run", params)
        assert raised.value.code == INVALID_PARAMS, params
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/history", {"sessionId": "nobody-made-this"})
    assert raised.value.code == INVALID_PARAMS
    assert "agent/newSession" in raised.value.message
    assert len(recorded(log)) == 2  # no bad request reached the model


async def test_forget_drops_the_session(start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path) -> None:
    daemon, _ = await scripted(start_daemon, tools_dir, tmp_path, answer("one"))
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    await daemon.request("agent/run", {"prompt": "first", "sessionId": session_id})
    assert await daemon.request("agent/forget", {"sessionId": session_id}) == {"forgotten": True}
    assert await daemon.request("agent/forget", {"sessionId": session_id}) == {"forgotten": False}
    with pytest.raises(RpcError) as raised:
        await daemon.request("agent/run", {"prompt": "second", "sessionId": session_id})
    assert raised.value.code == INVALID_PARAMS


async def cancel_a_run(daemon: DaemonSession, session_id: str, prompt: str) -> None:
    """Start a run in the session, cancel it once its answer streams, and see it refused."""
    request_id, run = daemon.request_future(
        "agent/run", {"prompt": prompt, "sessionId": session_id, "maxTokens": 10000, "workDoneToken": prompt}
    )
    await daemon.wait_until(
        lambda: any(v.get("llamaAgent", {}).get("event") == "text" for v in daemon.progress(prompt)),
        timeout=30,
    )
    daemon.cancel(request_id)
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(run, 10)
    assert raised.value.code == REQUEST_CANCELLED


async def test_a_cancelled_turn_is_recorded_and_never_answered_after_the_fact(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(
        start_daemon,
        tools_dir,
        tmp_path,
        answer("first answer"),
        LONG_ANSWER,
        answer("about the weather"),
        LONG_ANSWER,
        answer("the retried one"),
        delay=0.01,
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    await daemon.request("agent/run", {"prompt": "hello", "sessionId": session_id})
    await cancel_a_run(daemon, session_id, "Tell me a long story")

    # A chat client resends the stopped message with the next one: only the next one is answered.
    resent = await daemon.request(
        "agent/run", {"prompt": "Tell me a long story\nWhat about the weather?", "sessionId": session_id}
    )
    assert resent["answer"] == "about the weather"
    weather_prompt = prompts(log)[2]
    assert weather_prompt.endswith(
        'Assistant: {"answer": "first answer"}\n\nUser: What about the weather?\nAssistant: '
    )
    assert "long story" not in weather_prompt

    # The stopped message sent again on its own is a retry: answered, once.
    await cancel_a_run(daemon, session_id, "Summarise it")
    retried = await daemon.request("agent/run", {"prompt": "Summarise it", "sessionId": session_id})
    assert retried["answer"] == "the retried one"
    assert prompts(log)[4].count("Summarise it") == 1

    history = await daemon.request("agent/history", {"sessionId": session_id})
    assert [(t["request"], t["outcome"]) for t in history["turns"]] == [
        ("hello", "answered"),
        ("Tell me a long story", "cancelled"),
        ("What about the weather?", "answered"),
        ("Summarise it", "cancelled"),
        ("Summarise it", "answered"),
    ]


async def test_a_long_conversation_stays_within_the_context(
    start_daemon: StartDaemon, make_tools_dir: ToolsDirFactory, tmp_path: Path
) -> None:
    """Every turn reads a file of 8,000 characters into a context of 1,500 "tokens" (6,000
    characters at 4 a token): the run's own result must be cut to fit, and the conversation
    outgrows the context within a few turns; no turn fails."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for i in range(12):
        (workspace / f"part{i}.txt").write_text(f"part {i} begins. " + "x" * 8000, encoding="utf-8")
    script = [
        turn for i in range(12) for turn in (call("read_file", path=f"part{i}.txt"), answer(f"done {i}"))
    ]
    log = tmp_path / "model-requests.jsonl"
    daemon = await start_daemon(
        "--trusted-tools-dir",
        make_tools_dir("read_file", policies={"read_file": 'workspace = "ro"'}),
        "--workspace",
        workspace,
        script={"turns": script, "log": str(log), "contextSize": 1500},
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    shown = []
    for i in range(12):
        result = await daemon.request("agent/run", {"prompt": f"Read part{i}.txt", "sessionId": session_id})
        assert result["answer"] == f"done {i}", result
        assert result["steps"][0]["result"].startswith(f"part {i} begins.")  # the client gets it whole
        shown.append(result["usage"]["historyTurns"])
    assert max(shown) >= 1 and shown[-1] < 11  # the history showed, and gave way
    for prompt in prompts(log):
        assert len(prompt) / 4 + 256 <= 1500  # each prompt left room for its maxTokens (256)
    answer_prompt = prompts(log)[-1]
    assert "[cut: " in answer_prompt  # results shown in part, and marked
    history = await daemon.request("agent/history", {"sessionId": session_id})
    assert len(history["turns"]) == 12  # all on record
    assert history["windowStart"] > 0


async def test_follow_up_prompts_begin_with_the_prompt_before_them(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    """A follow-up evaluates only what is new: its prompt starts with everything the previous
    turn's prompt had, up to that turn's request."""
    daemon, log = await scripted(
        start_daemon, tools_dir, tmp_path, answer("one"), answer("two"), answer("three"), answer("four")
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    requests = ["Good morning!", "How are you?", "Tell me a joke.", "Thanks, bye."]
    for prompt in requests:
        await daemon.request("agent/run", {"prompt": prompt, "sessionId": session_id, "toolChoice": "none"})
    seen = prompts(log)
    for before, after, request in zip(seen, seen[1:], requests, strict=False):
        stable = before[: before.index(f"User: {request}\nAssistant: ")]
        assert after.startswith(stable)


async def test_an_arithmetic_follow_up_is_shown_in_full_and_recorded_as_said(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    daemon, log = await scripted(
        start_daemon,
        tools_dir,
        tmp_path,
        call("echo", value="84"),
        answer("84."),
        answer("21."),
    )
    session_id = (await daemon.request("agent/newSession"))["sessionId"]
    await daemon.request("agent/run", {"prompt": "Echo 84", "sessionId": session_id})
    await daemon.request("agent/run", {"prompt": "and divided by 4?", "sessionId": session_id})
    assert prompts(log)[-1].endswith("User: What is 84 / 4?\nAssistant: ")
    history = await daemon.request("agent/history", {"sessionId": session_id})
    assert [turn["request"] for turn in history["turns"]] == ["Echo 84", "and divided by 4?"]


async def test_a_call_copying_the_whole_request_takes_its_quoted_text(
    start_daemon: StartDaemon, tools_dir: Path, tmp_path: Path
) -> None:
    request = "Can you echo 'pineapple pizza' back to me?"
    daemon, log = await scripted(
        start_daemon, tools_dir, tmp_path, call("echo", value=request), answer("done")
    )
    result = await daemon.request("agent/run", {"prompt": request})
    assert result["steps"][0]["arguments"] == {"value": "pineapple pizza"}
    assert result["steps"][0]["result"] == "pineapple pizza"
    # The model's next turn sees the call as it was made.
    assert 'Assistant: {"tool": "echo", "arguments": {"value": "pineapple pizza"}}' in prompts(log)[-1]
