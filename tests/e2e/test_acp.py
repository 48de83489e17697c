"""`llama-agent acp` as a subprocess, driven by the ACP SDK's client side (a scripted model:
what the loop does with a model's turns is the subject, not the model's wording)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import acp
from acp import schema

from daemon.config import REPO_ROOT
from tests.scripted_model import answer, call


class Client:
    """The editor's side: records every session update, answers permission requests with
    `choices` in order (None: the person dismissed the question)."""

    def __init__(self, choices: list[str | None] | None = None) -> None:
        self.updates: list[Any] = []
        self.asked: list[schema.ToolCallUpdate] = []
        self._choices = list(choices or [])

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(update)

    async def request_permission(
        self,
        options: list[schema.PermissionOption],
        session_id: str,
        tool_call: schema.ToolCallUpdate,
        **kwargs: Any,
    ) -> schema.RequestPermissionResponse:
        self.asked.append(tool_call)
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
    **script: Any,
) -> AsyncIterator[acp.ClientSideConnection]:
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps({"turns": turns, **script}))
    args = ["-m", "tests.scripted_daemon", str(script_file), "acp"]
    args += ["--trusted-tools-dir", str(tools), "--cache-dir", str(cache_dir)]
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
    assert [asked.title for asked in client.asked] == ["write_file", "write_file"]  # not a third time
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
