"""`llama-agent mcp` as a subprocess, driven by the MCP SDK's own client over stdio."""

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
from typing import Any

from llama_agent.config import REPO_ROOT
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

from tests.wat_tools import tool_wasm

LLAMA_AGENT = str(Path(sys.executable).with_name("llama-agent"))


@asynccontextmanager
async def mcp_session(
    tools: Path, cache_dir: Path, config_dir: Path, changes: asyncio.Queue[Any] | None = None
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=LLAMA_AGENT,
        args=["mcp", "--tools-dir", str(tools), "--cache-dir", str(cache_dir)],
        env={**os.environ, "LLAMA_AGENT_CONFIG_DIR": str(config_dir)},
    )

    async def on_message(message: Any) -> None:
        if changes is not None and isinstance(message, types.ServerNotification):
            await changes.put(message.root)

    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
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
        wrong = await session.call_tool("echo", {"value": 5})
        assert wrong.isError is True and "value" in texts(wrong)[0]
        unknown = await session.call_tool("nope", {})
        assert unknown.isError is True and "nope" in texts(unknown)[0]


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
