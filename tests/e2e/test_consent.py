"""A call that may write, over LSP and on the command line: the person is asked
(window/showMessageRequest) once the client knows of the call, with its paths and its text;
a rejected call is an error result that says so, and never runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.clients import run_cli
from tests.consent import ALLOW_ONCE, ALWAYS, QUESTION, REJECT, answer_writes
from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.scripted_model import answer, call

WARNING = 2  # LSP MessageType.Warning
DECLINED = "not run: the person declined this call, so nothing was written"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


async def write(daemon: DaemonSession, path: str, content: str) -> tuple[bool, str]:
    result = await daemon.request(
        "tools/invoke", {"name": "write_file", "arguments": {"path": path, "content": content}}
    )
    return result["isError"], result["content"][0]["text"]


async def test_tools_invoke_asks_and_rejected_once_and_always_do_what_they_say(
    start_daemon: StartDaemon, writer: Path, workspace: Path
) -> None:
    daemon = await start_daemon("--trusted-tools-dir", writer, "--workspace", workspace)
    asked = answer_writes(daemon, REJECT, ALLOW_ONCE, ALWAYS)
    assert await write(daemon, "a.txt", "one") == (True, DECLINED)
    assert not (workspace / "a.txt").exists()
    assert await write(daemon, "a.txt", "two") == (False, "wrote 3 bytes to a.txt")
    assert await write(daemon, "a.txt", "three") == (False, "wrote 5 bytes to a.txt")
    assert await write(daemon, "b.txt", "four") == (False, "wrote 4 bytes to b.txt")
    assert (workspace / "a.txt").read_text() == "three" and (workspace / "b.txt").read_text() == "four"
    assert len(asked) == 3  # "always in this session": not a fourth time
    question = asked[0]
    assert question["type"] == WARNING
    assert [action["title"] for action in question["actions"]] == [ALLOW_ONCE, ALWAYS, REJECT]
    message = question["message"]
    assert message.startswith(
        f"llama-agent: The tool 'write_file' ('{writer / 'write_file.wasm'}') asks to run with read-write "
        f"access to '{workspace}' (at '/workspace'). It names '{workspace / 'a.txt'}' (path)."
    )
    assert "Text: 'one' (content, 3 characters)." in message
    assert message.endswith("Allow this call?")


async def test_a_dismissed_question_or_an_error_answer_runs_nothing(
    start_daemon: StartDaemon, writer: Path, workspace: Path
) -> None:
    daemon = await start_daemon("--trusted-tools-dir", writer, "--workspace", workspace)
    answer_writes(daemon, None)
    assert await write(daemon, "a.txt", "x") == (True, DECLINED)

    async def broken(params: Any) -> Any:
        raise RpcError(-32603, "the editor cannot show it")

    daemon.on_server_request(QUESTION, broken)
    is_error, text = await write(daemon, "a.txt", "x")
    assert is_error and text.startswith("not run: write_file would write the text 'x'")
    assert "the editor could not ask" in text and "the editor cannot show it" in text
    assert not (workspace / "a.txt").exists()


async def test_allow_writes_asks_nobody(start_daemon: StartDaemon, writer: Path, workspace: Path) -> None:
    daemon = await start_daemon("--trusted-tools-dir", writer, "--workspace", workspace, "--allow-writes")
    assert await write(daemon, "a.txt", "x") == (False, "wrote 1 bytes to a.txt")
    assert daemon.server_requests(QUESTION) == []


async def test_in_an_agent_run_the_question_follows_the_calls_progress_report(
    start_daemon: StartDaemon, writer: Path, workspace: Path, tmp_path: Path
) -> None:
    turns = [
        call("write_file", path="a.txt", content="first"),
        call("write_file", path="b.txt", content="second"),
        answer("Wrote b.txt only."),
    ]
    script = {"turns": turns, "pieceSize": 4}
    daemon = await start_daemon("--trusted-tools-dir", writer, initialize=False, script=script)
    asked = answer_writes(daemon, REJECT, ALLOW_ONCE)
    await daemon.initialize(rootUri=workspace.as_uri())
    messages = daemon.record_messages()
    result = await daemon.request("agent/run", {"prompt": "write them", "workDoneToken": "run"})
    rejected, allowed = result["steps"]
    assert rejected["isError"] is True and rejected["result"].startswith(DECLINED)
    assert "Answer without it, or call another tool." in rejected["result"]
    assert (allowed["isError"], allowed["result"]) == (False, "wrote 6 bytes to b.txt")
    assert not (workspace / "a.txt").exists() and (workspace / "b.txt").read_text() == "second"
    assert len(asked) == 2

    def reported_call(message: dict[str, Any]) -> int | None:
        value = message.get("params", {}).get("value", {}) if message.get("method") == "$/progress" else {}
        event = value.get("llamaAgent", {})
        return event.get("step") if event.get("event") == "toolCall" else None

    order = [
        ("question", None) if message.get("method") == QUESTION else ("call", reported_call(message))
        for message in messages
        if message.get("method") == QUESTION or reported_call(message) is not None
    ]
    assert order == [("call", 0), ("question", None), ("call", 1), ("question", None)]


def test_tools_invoke_on_the_command_line_runs_the_call_the_person_typed(
    writer: Path, workspace: Path, cache_dir: Path, config_dir: Path
) -> None:
    done = run_cli(
        "tools", "invoke", "write_file", "path=a.txt", "content=typed",
        "--trusted-tools-dir", writer, "--workspace", workspace, "--cache-dir", cache_dir,
        config_dir=config_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrote 5 bytes to a.txt\n"
    assert (workspace / "a.txt").read_text() == "typed"
