"""`llama-agent acp` as a subprocess, driven by the ACP SDK's client side (a scripted model:
what the loop does with a model's turns is the subject, not the model's wording)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import acp
import pytest
from acp import schema
from llama_agent.common.errors import INVALID_PARAMS
from llama_agent.config import REPO_ROOT
from llama_agent.faces.acp import MAX_SESSIONS

from tests.clients import LLAMA_AGENT
from tests.scripted_model import answer, call, recorded
from tests.wat_tools import tool_wasm


class Client:
    """The editor's side: records every session update, answers permission requests with
    `choices` in order (None: the person dismissed the question)."""

    def __init__(self, choices: list[str | None] | None = None) -> None:
        self.updates: list[Any] = []
        self.asked: list[schema.ToolCallUpdate] = []
        # What the editor heard of each call, in order: ("tool_call" | "permission", call id).
        self.heard: list[tuple[str, str]] = []
        self._choices = list(choices or [])

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(update)
        if update.session_update == "tool_call":
            self.heard.append(("tool_call", update.tool_call_id))

    async def request_permission(
        self,
        options: list[schema.PermissionOption],
        session_id: str,
        tool_call: schema.ToolCallUpdate,
        **kwargs: Any,
    ) -> schema.RequestPermissionResponse:
        self.asked.append(tool_call)
        self.heard.append(("permission", tool_call.tool_call_id))
        choice = self._choices.pop(0)
        assert choice is None or choice in {option.option_id for option in options}
        outcome = (
            schema.DeniedOutcome(outcome="cancelled")
            if choice is None
            else schema.AllowedOutcome(outcome="selected", option_id=choice)
        )
        return schema.RequestPermissionResponse(outcome=outcome)

    def of_kind(self, kind: str) -> list[Any]:
        return [update for update in self.updates if update.session_update == kind]

    def said(self) -> str:
        return "".join(update.content.text for update in self.of_kind("agent_message_chunk"))


@asynccontextmanager
async def acp_agent(
    tmp_path: Path,
    tools: Path,
    cache_dir: Path,
    config_dir: Path,
    client: Client,
    turns: list[str],
    *options: str,
    **script: Any,
) -> AsyncIterator[acp.ClientSideConnection]:
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps({"turns": turns, **script}))
    args = ["-m", "tests.scripted_daemon", str(script_file), "acp"]
    args += ["--trusted-tools-dir", str(tools), "--cache-dir", str(cache_dir), *options]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LLAMA_AGENT_CONFIG_DIR": str(config_dir)}
    editor = cast(acp.Client, client)  # the SDK dispatches to the methods it has, by name
    async with acp.spawn_agent_process(editor, sys.executable, *args, env=env) as (conn, _process):
        started = await conn.initialize(protocol_version=acp.PROTOCOL_VERSION)
        assert started.protocol_version == acp.PROTOCOL_VERSION
        yield conn


def writing_tools(tmp_path: Path, tools_dir: Path, bundled_tools: Path) -> Path:
    shutil.copy2(bundled_tools / "write_file.wasm", tools_dir / "write_file.wasm")
    (tools_dir / "write_file.policy.toml").write_text('workspace = "rw"\n')
    return tools_dir


async def test_a_prompt_runs_the_agent_and_streams_the_answer_and_each_call(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    client = Client()
    turns = [call("echo", value="Something to echo"), answer("It said: Something to echo")]
    async with acp_agent(tmp_path, tools_dir, cache_dir, config_dir, client, turns) as conn:
        session = await conn.new_session(cwd=str(tmp_path), mcp_servers=[])
        done = await conn.prompt(session_id=session.session_id, prompt=[acp.text_block("echo it")])
    assert done.stop_reason == "end_turn"
    assert client.asked == []  # echo can write nowhere: nobody is asked
    [started] = client.of_kind("tool_call")
    [finished] = client.of_kind("tool_call_update")
    assert (started.title, started.status, started.raw_input) == (
        "echo",
        "in_progress",
        {"value": "Something to echo"},
    )
    assert (finished.tool_call_id, finished.status) == (started.tool_call_id, "completed")
    assert finished.content[0].content.text == "Something to echo"
    assert client.said() == "It said: Something to echo"


async def test_a_tool_that_can_write_runs_only_with_permission_and_always_is_remembered(
    tmp_path: Path, tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    workspace = tmp_path / "project"
    workspace.mkdir()
    client = Client(choices=["reject-once", "allow-always"])
    write = call("write_file", path="a.txt", content="hi")
    turns = [
        write,
        answer("not written"),
        write,
        answer("written"),
        call("write_file", path="b.txt", content="x"),
        answer("again"),
    ]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        first = await conn.prompt(session_id=session, prompt=[acp.text_block("write a.txt")])
        assert not (workspace / "a.txt").exists()
        [declined] = client.of_kind("tool_call_update")
        assert declined.status == "failed" and "declined" in declined.content[0].content.text
        await conn.prompt(session_id=session, prompt=[acp.text_block("write a.txt")])
        assert (workspace / "a.txt").read_text() == "hi"
        await conn.prompt(session_id=session, prompt=[acp.text_block("write b.txt")])
        assert (workspace / "b.txt").read_text() == "x"
    assert first.stop_reason == "end_turn"
    titles = [asked.title for asked in client.asked]
    assert titles == [f"write_file may write to '{workspace}'"] * 2  # not a third time
    assert client.asked[0].raw_input == {"path": "a.txt", "content": "hi"}


async def test_cancel_ends_the_turn_as_cancelled_and_the_session_serves_on(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    client = Client()
    slow = answer("word " * 200)
    turns = [slow, answer("next")]
    async with acp_agent(tmp_path, tools_dir, cache_dir, config_dir, client, turns, pieceDelay=0.02) as conn:
        session = (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
        running = asyncio.ensure_future(conn.prompt(session_id=session, prompt=[acp.text_block("talk")]))
        while not client.of_kind("agent_message_chunk"):
            await asyncio.sleep(0.02)
        await conn.cancel(session_id=session)
        assert (await asyncio.wait_for(running, 10)).stop_reason == "cancelled"
        again = await conn.prompt(session_id=session, prompt=[acp.text_block("go on")])
        assert again.stop_reason == "end_turn"
    assert client.said().endswith("next")


def replace_atomically(path: Path, data: bytes) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_bytes(data)
    os.replace(staged, path)


async def test_always_allow_is_not_carried_over_to_another_component_of_the_same_name(
    tmp_path: Path, tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    workspace = tmp_path / "project"
    workspace.mkdir()
    client = Client(choices=["allow-always", "reject-once"])
    turns = [
        turn for n in range(40) for turn in (call("write_file", path=f"{n}.txt", content="x"), answer("ok"))
    ]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        for _ in range(2):  # asked once, then allowed
            await conn.prompt(session_id=session, prompt=[acp.text_block("write")])
        assert len(client.asked) == 1 and (workspace / "1.txt").exists()
        # Another component that declares the same name, with the same policy: asked again.
        swapped = tool_wasm("write_file", params=(("path", "string", True), ("content", "string", True)))
        replace_atomically(tools / "write_file.wasm", swapped)
        for n in range(2, 40):
            await conn.prompt(session_id=session, prompt=[acp.text_block("write")])
            if len(client.asked) > 1 or n == 39:
                break
            assert (workspace / f"{n}.txt").exists()  # the old component, not yet reloaded
            await asyncio.sleep(0.3)
    assert len(client.asked) == 2, "the swapped component ran on the old component's approval"
    assert not (workspace / f"{n}.txt").exists()


async def test_the_permission_request_shows_names_and_paths_with_their_escapes_visible(
    tmp_path: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    tools = tmp_path / "tools\x1b[2K"
    tools.mkdir()
    writing_tools(tmp_path, tools, bundled_tools)
    workspace = tmp_path / "project\x1b[2K\u202e"
    workspace.mkdir()
    client = Client(choices=["reject-once"])
    turns = [call("write_file", path="a.txt", content="\x1b[31mred\r"), answer("not written")]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        await conn.prompt(session_id=session, prompt=[acp.text_block("write")])
    [asked] = client.asked
    shown = json.dumps(asked.model_dump(mode="json", by_alias=True), ensure_ascii=False)
    assert "\x1b" not in shown and "\u202e" not in shown and "\r" not in shown
    assert asked.title is not None and "project\\x1b[2K\\u202e" in asked.title  # where it may write
    assert asked.title.startswith("write_file")
    detail, diff = asked.content or []
    text = detail.content.text
    assert "tools\\x1b[2K" in text and "write_file.wasm" in text  # which component
    assert "project\\x1b[2K\\u202e" in text
    visible_path = str(workspace / "a.txt").replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
    assert (diff.type, diff.path, diff.old_text) == ("diff", visible_path, None)  # a new file
    assert diff.new_text == "\\x1b[31mred\\r"
    assert [location.path for location in asked.locations or []] == [visible_path]
    assert asked.raw_input == {"path": "a.txt", "content": "\\x1b[31mred\\r"}
    [announced] = client.of_kind("tool_call")  # the call as the editor first heard of it
    assert announced.raw_input == asked.raw_input
    assert not (workspace / "a.txt").exists()


async def test_sessions_are_bounded_and_the_least_recently_used_idle_one_goes_first(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    client = Client()
    turns = [answer("one"), answer("two"), answer("three")]
    async with acp_agent(tmp_path, tools_dir, cache_dir, config_dir, client, turns) as conn:
        sessions = [(await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id]
        sessions += [
            (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
            for _ in range(MAX_SESSIONS - 1)
        ]
        await conn.prompt(session_id=sessions[0], prompt=[acp.text_block("hi")])  # now the most recent
        newest = (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
        with pytest.raises(acp.RequestError) as gone:
            await conn.prompt(session_id=sessions[1], prompt=[acp.text_block("hi")])
        assert gone.value.code == INVALID_PARAMS and gone.value.data == {"field": "sessionId"}
        assert str(gone.value).startswith("sessionId: no such session")  # clients show the message
        for kept in (sessions[0], newest):
            done = await conn.prompt(session_id=kept, prompt=[acp.text_block("hi")])
            assert done.stop_reason == "end_turn"
    assert len(sessions) == MAX_SESSIONS


async def test_a_cwd_that_cannot_be_checked_is_invalid_params(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    a_file = tmp_path / "file"
    a_file.write_text("")
    bad = [
        "/" + "a" * 5000,
        "/" + "a/" * 3000,
        f"{tmp_path}/nul\0byte",
        str(loop),
        str(a_file),
        "relative",
        "",
    ]
    async with acp_agent(tmp_path, tools_dir, cache_dir, config_dir, Client(), []) as conn:
        for cwd in bad:
            with pytest.raises(acp.RequestError) as refused:
                await conn.new_session(cwd=cwd, mcp_servers=[])
            assert refused.value.code == INVALID_PARAMS, cwd[:40]
            assert refused.value.data == {"field": "cwd"}, cwd[:40]
            assert str(refused.value).startswith("cwd: "), cwd[:40]
        assert (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id


async def test_the_permission_request_follows_its_tool_call_with_locations_and_a_diff(
    tmp_path: Path, tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    """A client that replaces a call's state on its `tool_call` would drop a question sent
    before it: each question comes after its call's update, every time."""
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    workspace = tmp_path / "project"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("old line\n")
    runs = 5
    client = Client(choices=["allow-once"] * runs)
    turns = [
        t
        for n in range(runs)
        for t in (call("write_file", path="notes.txt", content=f"v{n}\n"), answer("ok"))
    ]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        for _ in range(runs):
            await conn.prompt(session_id=session, prompt=[acp.text_block("write the notes")])
    calls = [call_id for kind, call_id in client.heard if kind == "tool_call"]
    assert len(calls) == runs
    assert client.heard == [(kind, call_id) for call_id in calls for kind in ("tool_call", "permission")]
    for n, asked in enumerate(client.asked):
        [location] = asked.locations or []
        assert location.path == str(workspace / "notes.txt")
        detail, diff = asked.content or []
        assert f"It names '{workspace / 'notes.txt'}' (path)" in detail.content.text
        assert (diff.type, diff.path, diff.new_text) == ("diff", str(workspace / "notes.txt"), f"v{n}\n")
        assert diff.old_text == ("old line\n" if n == 0 else f"v{n - 1}\n")  # what it replaces
    assert (workspace / "notes.txt").read_text() == f"v{runs - 1}\n"


async def test_a_writing_call_in_two_sessions_writes_each_sessions_folder(
    tmp_path: Path, tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    client = Client(choices=["allow-always", "allow-once"])
    write = call("write_file", path="which.txt", content="here")
    turns = [
        write,
        answer("one"),
        write,
        answer("two"),
        call("write_file", path="b.txt", content="x"),
        answer(""),
    ]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns) as conn:
        one = (await conn.new_session(cwd=str(first), mcp_servers=[])).session_id
        two = (await conn.new_session(cwd=str(second), mcp_servers=[])).session_id
        await conn.prompt(session_id=one, prompt=[acp.text_block("write")])
        await conn.prompt(session_id=two, prompt=[acp.text_block("write")])  # asked: its own session
        await conn.prompt(session_id=one, prompt=[acp.text_block("write")])  # always, in this one
    assert (first / "which.txt").read_text() == "here" and (second / "which.txt").read_text() == "here"
    assert (first / "b.txt").read_text() == "x"
    assert [asked.title for asked in client.asked] == [
        f"write_file may write to '{first}'",
        f"write_file may write to '{second}'",
    ]


def test_the_protocol_may_go_to_a_regular_file(tmp_path: Path, tools_dir: Path, cache_dir: Path) -> None:
    """`llama-agent acp > file`: the event loop's pipe transport refuses a regular file."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "session/new",
            "params": {"cwd": str(tmp_path), "mcpServers": []},
        },
    ]
    out = tmp_path / "out.jsonl"
    with out.open("wb") as file:
        done = subprocess.run(
            [LLAMA_AGENT, "acp", "--tools-dir", str(tools_dir), "--cache-dir", str(cache_dir)],
            input="".join(json.dumps(message) + "\n" for message in messages).encode(),
            stdout=file,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [answer["id"] for answer in answers] == [1, 2]
    assert answers[1]["result"]["sessionId"]


async def test_a_tool_that_loses_its_name_to_another_is_logged(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    (tools_dir / "shadow.wasm").write_bytes(tool_wasm("echo", version="6.6.6"))
    log_file = tmp_path / "acp.log"
    async with acp_agent(
        tmp_path, tools_dir, cache_dir, config_dir, Client(), [], "--log-file", str(log_file)
    ) as conn:
        await conn.new_session(cwd=str(tmp_path), mcp_servers=[])
        for _ in range(300):
            if "is already provided by" in (log_file.read_text() if log_file.exists() else ""):
                break
            await asyncio.sleep(0.1)
    logged = log_file.read_text()
    assert f"WARNING llama_agent.core: cannot load tool '{tools_dir / 'shadow.wasm'}'" in logged
    assert f"tool name 'echo' is already provided by {tools_dir / 'echo.wasm'}" in logged


async def test_a_sessions_prompts_are_one_conversation_and_a_resent_stopped_prompt_is_not_answered(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    """Editors send only the new message, and after a stop CodeCompanion sends the stopped one
    again with the next: each session remembers its own prompts, never the stopped one's."""
    client = Client()
    log = tmp_path / "model.jsonl"
    turns = [answer("It is Tuesday."), answer("Hello there."), answer("word " * 200), answer("Wednesday.")]
    async with acp_agent(
        tmp_path, tools_dir, cache_dir, config_dir, client, turns, pieceDelay=0.02, log=str(log)
    ) as conn:
        first = (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
        other = (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
        await conn.prompt(session_id=first, prompt=[acp.text_block("What day is it?")])
        await conn.prompt(session_id=other, prompt=[acp.text_block("Hi!")])
        running = asyncio.ensure_future(
            conn.prompt(session_id=first, prompt=[acp.text_block("Tell a story")])
        )
        while not client.said().endswith("word "):
            await asyncio.sleep(0.02)
        await conn.cancel(session_id=first)
        assert (await asyncio.wait_for(running, 10)).stop_reason == "cancelled"
        resent = [acp.text_block("Tell a story"), acp.text_block("And tomorrow?")]
        assert (await conn.prompt(session_id=first, prompt=resent)).stop_reason == "end_turn"
    prompts = [request["prompt"] for request in recorded(log)]
    assert "What day is it?" not in prompts[1]  # the other session's
    assert prompts[3].endswith(
        'User: What day is it?\nAssistant: {"answer": "It is Tuesday."}\n\nUser: And tomorrow?\nAssistant: '
    )
    assert "Tell a story" not in prompts[3]


# -- what ACP editors do: writes allowed and rejected, follow-ups, a stop during a question -------

DECLINED_OBSERVATION = (
    'Error: "not run: the person declined this call, so nothing was written. '
    'Answer without it, or call another tool."'
)


async def test_a_rejected_or_failed_write_reaches_the_answer_turn_as_not_written(
    tmp_path: Path, tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    """One prompt, three writes: allowed, allowed but failing, rejected. The model's answer turn
    reads each outcome as it was, and a follow-up still does: nothing claims the two writes
    happened."""
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    workspace = tmp_path / "project"
    (workspace / "sub").mkdir(parents=True)
    client = Client(choices=["allow-once", "allow-once", "reject-once"])
    log = tmp_path / "model.jsonl"
    turns = [
        call("write_file", path="a.txt", content="one"),
        call("write_file", path="sub", content="two"),
        call("write_file", path="c.txt", content="three"),
        answer("Wrote a.txt; sub is a directory; you declined c.txt."),
        answer("No, c.txt was not written."),
    ]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns, log=str(log)) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        done = await conn.prompt(session_id=session, prompt=[acp.text_block("write a.txt, sub and c.txt")])
        assert done.stop_reason == "end_turn"
        await conn.prompt(session_id=session, prompt=[acp.text_block("Did you write c.txt?")])
    assert (workspace / "a.txt").read_text() == "one"
    assert not (workspace / "c.txt").exists() and not any((workspace / "sub").iterdir())
    wrote, failed, declined = client.of_kind("tool_call_update")
    assert [wrote.status, failed.status, declined.status] == ["completed", "failed", "failed"]
    assert failed.content[0].content.text == "cannot write 'sub': it is a directory"
    assert "declined this call, so nothing was written" in declined.content[0].content.text

    prompts = [request["prompt"] for request in recorded(log)]
    assert len(prompts) == 5
    answer_turn = prompts[3]  # what the model read before it answered
    assert answer_turn.endswith(
        "User: write a.txt, sub and c.txt\n"
        'Assistant: {"tool": "write_file", "arguments": {"path": "a.txt", "content": "one"}}\n'
        'Result: "wrote 3 bytes to a.txt"\n'
        'Assistant: {"tool": "write_file", "arguments": {"path": "sub", "content": "two"}}\n'
        "Error: \"cannot write 'sub': it is a directory\"\n"
        'Assistant: {"tool": "write_file", "arguments": {"path": "c.txt", "content": "three"}}\n'
        f"{DECLINED_OBSERVATION}\nAssistant: "
    )
    follow_up = prompts[4]  # the earlier turn, as the conversation shows it
    assert f"{DECLINED_OBSERVATION}\nAssistant: " in follow_up
    assert follow_up.endswith(
        'Assistant: {"answer": "Wrote a.txt; sub is a directory; you declined c.txt."}\n\n'
        "User: Did you write c.txt?\nAssistant: "
    )


async def test_a_follow_up_prompt_sees_the_previous_request_its_call_and_answer(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    client = Client()
    log = tmp_path / "model.jsonl"
    turns = [call("echo", value="banana"), answer("The word was banana."), answer("BANANA")]
    async with acp_agent(tmp_path, tools_dir, cache_dir, config_dir, client, turns, log=str(log)) as conn:
        session = (await conn.new_session(cwd=str(tmp_path), mcp_servers=[])).session_id
        await conn.prompt(session_id=session, prompt=[acp.text_block("Echo the secret word banana")])
        again = await conn.prompt(session_id=session, prompt=[acp.text_block("Say it again in capitals")])
    assert again.stop_reason == "end_turn"
    assert client.said().endswith("BANANA")
    prompts = [request["prompt"] for request in recorded(log)]
    assert len(prompts) == 3
    assert prompts[2].endswith(
        "User: Echo the secret word banana\n"
        'Assistant: {"tool": "echo", "arguments": {"value": "banana"}}\n'
        'Result: "banana"\n'
        'Assistant: {"answer": "The word was banana."}\n\n'
        "User: Say it again in capitals\nAssistant: "
    )


class QuestionHeldOpen(Client):
    """An editor whose permission question stays open until the test answers it (`answer`: an
    option id, "cancelled" as ACP wants after a stop, or never)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def request_permission(
        self,
        options: list[schema.PermissionOption],
        session_id: str,
        tool_call: schema.ToolCallUpdate,
        **kwargs: Any,
    ) -> schema.RequestPermissionResponse:
        self.asked.append(tool_call)
        self.open.set()
        choice = await self.answer
        outcome = (
            schema.DeniedOutcome(outcome="cancelled")
            if choice == "cancelled"
            else schema.AllowedOutcome(outcome="selected", option_id=choice)
        )
        return schema.RequestPermissionResponse(outcome=outcome)


@pytest.mark.parametrize("late_answer", ["cancelled", "allow-once", None])
async def test_a_stop_while_the_permission_question_is_open_closes_the_call_as_cancelled(
    tmp_path: Path,
    tools_dir: Path,
    bundled_tools: Path,
    cache_dir: Path,
    config_dir: Path,
    late_answer: str | None,
) -> None:
    """The person stops the prompt while asked about a write; the editor then answers the
    question "cancelled" (as ACP wants), or "allow-once" (clicked as they stopped), or never. The
    call is not run, its tool call is closed (ACP has no "cancelled" status: "failed", saying
    cancelled) before the prompt ends "cancelled", and the session serves on."""
    tools = writing_tools(tmp_path, tools_dir, bundled_tools)
    workspace = tmp_path / "project"
    workspace.mkdir()
    client = QuestionHeldOpen()
    log = tmp_path / "model.jsonl"
    turns = [call("write_file", path="a.txt", content="one"), answer("Hello again.")]
    async with acp_agent(tmp_path, tools, cache_dir, config_dir, client, turns, log=str(log)) as conn:
        session = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        running = asyncio.ensure_future(
            conn.prompt(session_id=session, prompt=[acp.text_block("write a.txt")])
        )
        await asyncio.wait_for(client.open.wait(), 30)
        await conn.cancel(session_id=session)
        if late_answer is not None:
            client.answer.set_result(late_answer)
        assert (await asyncio.wait_for(running, 10)).stop_reason == "cancelled"
        [started] = client.of_kind("tool_call")
        [closed] = client.of_kind("tool_call_update")  # sent before the prompt's answer
        again = await conn.prompt(session_id=session, prompt=[acp.text_block("hello")])
        assert again.stop_reason == "end_turn"
        await asyncio.sleep(0.5)  # time for a write that should not happen
    assert (closed.tool_call_id, closed.status) == (started.tool_call_id, "failed")
    assert closed.content[0].content.text == (
        "cancelled: the prompt was stopped before the person answered; not run, nothing was written"
    )
    assert not (workspace / "a.txt").exists()
    assert client.said().endswith("Hello again.")
    prompts = [request["prompt"] for request in recorded(log)]
    assert "write a.txt" not in prompts[1]  # a stopped turn is not shown to later ones
