"""`llama-agent mcp` as a subprocess, driven by the MCP SDK's own client over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import INVALID_PARAMS
from llama_agent.config import REPO_ROOT
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.session import ElicitationFnT
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError

from tests.clients import LLAMA_AGENT
from tests.wat_tools import tool_wasm


@asynccontextmanager
async def mcp_session(
    tools: Path,
    cache_dir: Path,
    config_dir: Path,
    changes: asyncio.Queue[Any] | None = None,
    *options: str,
    elicitation: ElicitationFnT | None = None,
) -> AsyncIterator[ClientSession]:
    """`llama-agent mcp` on `tools` (with `options`) and a client of it; with `elicitation`, the
    client declares the capability and answers with it."""
    params = StdioServerParameters(
        command=LLAMA_AGENT,
        args=["mcp", "--tools-dir", str(tools), "--cache-dir", str(cache_dir), *options],
        env={**os.environ, "LLAMA_AGENT_CONFIG_DIR": str(config_dir)},
    )

    async def on_message(message: Any) -> None:
        if changes is not None and isinstance(message, types.ServerNotification):
            await changes.put(message.root)

    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(
                read, write, message_handler=on_message, elicitation_callback=elicitation
            ) as session,
        ):
            await session.initialize()
            yield session


def texts(result: types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, types.TextContent)]


async def test_lists_and_calls_the_tools_with_errors_as_results(
    tools_dir: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> None:
    shutil.copy2(bundled_tools / "write_file.wasm", tools_dir / "write_file.wasm")
    (tools_dir / "fails.wasm").write_bytes(tool_wasm("fails", params=(), behaviour="fail"))
    async with mcp_session(tools_dir, cache_dir, config_dir) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert {"echo", "print", "fails", "write_file"} <= listed.keys()
        assert listed["echo"].inputSchema["required"] == ["value"]
        assert listed["echo"].annotations is not None and listed["echo"].annotations.readOnlyHint is True

        called = await session.call_tool("echo", {"value": "Something to echo"})
        assert (called.isError, texts(called)) == (False, ["Something to echo"])
        failed = await session.call_tool("fails", {})
        assert failed.isError is True and texts(failed)
        # A call that cannot run as asked is a protocol error, as on the LSP face.
        with pytest.raises(McpError) as wrong:
            await session.call_tool("echo", {"value": 5})
        assert (wrong.value.error.code, wrong.value.error.data) == (INVALID_PARAMS, {"field": "value"})
        with pytest.raises(McpError) as unknown:
            await session.call_tool("nope", {})
        assert unknown.value.error.code == INVALID_PARAMS and "nope" in unknown.value.error.message


async def test_a_hot_reload_sends_list_changed(tools_dir: Path, cache_dir: Path, config_dir: Path) -> None:
    changes: asyncio.Queue[Any] = asyncio.Queue()
    async with mcp_session(tools_dir, cache_dir, config_dir, changes) as session:
        assert "shout" not in {tool.name for tool in (await session.list_tools()).tools}
        (tools_dir / "shout.wasm").write_bytes(tool_wasm("shout"))
        notification = await asyncio.wait_for(changes.get(), 30)
        assert isinstance(notification, types.ToolListChangedNotification)
        assert "shout" in {tool.name for tool in (await session.list_tools()).tools}


INSPECTOR = REPO_ROOT / "tests" / "mcp_inspector" / "node_modules" / ".bin" / "mcp-inspector"


def inspector(tmp_path: Path, tools: Path, cache_dir: Path, config_dir: Path, *method: str) -> Any:
    """The MCP Inspector's CLI (installed by `make test`) against `llama-agent mcp`: its JSON."""
    assert INSPECTOR.exists(), f"{INSPECTOR} is missing: `make test` installs it"
    server = [LLAMA_AGENT, "mcp", "--tools-dir", str(tools), "--cache-dir", str(cache_dir)]
    done = subprocess.run(
        [str(INSPECTOR), "--cli", *server, *method],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "MCP_CATALOG_PATH": str(tmp_path / "catalog.json"),
            "LLAMA_AGENT_CONFIG_DIR": str(config_dir),
        },
        check=True,
    )
    return json.loads(done.stdout)


def test_the_mcp_inspector_cli_lists_and_calls(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    listed = inspector(tmp_path, tools_dir, cache_dir, config_dir, "--method", "tools/list")
    echo = next(tool for tool in listed["tools"] if tool["name"] == "echo")
    assert echo["inputSchema"]["required"] == ["value"]
    assert echo["annotations"]["readOnlyHint"] is True
    called = inspector(
        tmp_path, tools_dir, cache_dir, config_dir,
        "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "value=Something to echo",
    )  # fmt: skip
    assert called == {"content": [{"type": "text", "text": "Something to echo"}], "isError": False}


# -- calls that may write ------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


class Person:
    """A client's elicitation: the person answers `answers` in order (action, remember)."""

    def __init__(self, *answers: tuple[str, bool]) -> None:
        self.answers = list(answers)
        self.asked: list[types.ElicitRequestParams] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params)
        action, always = self.answers.pop(0)
        content = {"always": always} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]


def writing(writer: Path, workspace: Path, *more: str) -> tuple[str, ...]:
    return ("--trusted-tools-dir", str(writer), "--workspace", str(workspace), *more)


async def test_a_call_that_may_write_is_asked_about_with_an_elicitation(
    tools_dir: Path, writer: Path, workspace: Path, cache_dir: Path, config_dir: Path
) -> None:
    person = Person(("decline", False), ("accept", False), ("accept", True))
    options = writing(writer, workspace)
    async with mcp_session(tools_dir, cache_dir, config_dir, None, *options, elicitation=person) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        annotations = listed["write_file"].annotations
        assert annotations is not None and annotations.destructiveHint is True
        declined = await session.call_tool("write_file", {"path": "a.txt", "content": "one"})
        assert declined.isError is True and texts(declined)[0].startswith("not run: the person declined")
        assert not (workspace / "a.txt").exists()
        once = await session.call_tool("write_file", {"path": "a.txt", "content": "two"})
        assert (once.isError, (workspace / "a.txt").read_text()) == (False, "two")
        always = await session.call_tool("write_file", {"path": "a.txt", "content": "three"})
        assert (always.isError, (workspace / "a.txt").read_text()) == (False, "three")
        again = await session.call_tool("write_file", {"path": "b.txt", "content": "four"})
        assert (again.isError, (workspace / "b.txt").read_text()) == (False, "four")
        echoed = await session.call_tool("echo", {"value": "no question"})  # writes nowhere
        assert texts(echoed) == ["no question"]
    assert len(person.asked) == 3  # "always": not a fourth time
    question = person.asked[0]
    assert isinstance(question, types.ElicitRequestFormParams)
    assert f"'{workspace / 'a.txt'}' (path)" in question.message
    assert "'one' (content, 3 characters)" in question.message
    assert "always" in question.requestedSchema["properties"]


async def test_without_elicitation_a_writing_call_is_refused_saying_what_and_how(
    tools_dir: Path, writer: Path, workspace: Path, cache_dir: Path, config_dir: Path
) -> None:
    async with mcp_session(tools_dir, cache_dir, config_dir, None, *writing(writer, workspace)) as session:
        refused = await session.call_tool("write_file", {"path": "a.txt", "content": "hello"})
    assert refused.isError is True
    [text] = texts(refused)
    assert text.startswith(
        f"not run: write_file would write the text 'hello' (content, 5 characters) to "
        f"'{workspace / 'a.txt'}' (path). Writing needs the person's approval"
    )
    assert "`llama-agent mcp --allow-writes`" in text and "elicitation" in text
    assert not (workspace / "a.txt").exists()


async def test_allow_writes_approves_them_up_front(
    tools_dir: Path, writer: Path, workspace: Path, cache_dir: Path, config_dir: Path
) -> None:
    options = writing(writer, workspace, "--allow-writes")
    async with mcp_session(tools_dir, cache_dir, config_dir, None, *options) as session:
        wrote = await session.call_tool("write_file", {"path": "a.txt", "content": "hello"})
    assert (wrote.isError, (workspace / "a.txt").read_text()) == (False, "hello")


def test_the_protocol_may_go_to_a_regular_file(tmp_path: Path, tools_dir: Path, cache_dir: Path) -> None:
    """`llama-agent mcp > file`: the event loop's pipe transport refuses a regular file."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    messages = [initialize, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    messages.append({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    out = tmp_path / "out.jsonl"
    command = [LLAMA_AGENT, "mcp", "--tools-dir", str(tools_dir), "--cache-dir", str(cache_dir)]
    with out.open("wb") as file:
        server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=file, stderr=subprocess.DEVNULL)
        assert server.stdin is not None
        server.stdin.write("".join(json.dumps(message) + "\n" for message in messages).encode())
        server.stdin.flush()
        deadline = time.monotonic() + 120
        while out.read_text().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.stdin.close()  # the client goes: the server ends
        assert server.wait(30) == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [answer["id"] for answer in answers] == [1, 2]
    assert {tool["name"] for tool in answers[1]["result"]["tools"]} == {"echo", "print"}


async def test_a_tool_that_loses_its_name_to_another_is_logged(
    tmp_path: Path, tools_dir: Path, cache_dir: Path, config_dir: Path
) -> None:
    (tools_dir / "shadow.wasm").write_bytes(tool_wasm("echo", version="6.6.6"))
    log_file = tmp_path / "mcp.log"
    async with mcp_session(tools_dir, cache_dir, config_dir, None, "--log-file", str(log_file)) as session:
        assert "echo" in {tool.name for tool in (await session.list_tools()).tools}
        for _ in range(300):
            if "is already provided by" in log_file.read_text():
                break
            await asyncio.sleep(0.1)
    logged = log_file.read_text()
    assert f"WARNING llama_agent.core: cannot load tool '{tools_dir / 'shadow.wasm'}'" in logged
    assert f"tool name 'echo' is already provided by {tools_dir / 'echo.wasm'}" in logged
