"""The typed clients of tests/clients.py against the real daemon, one face at a time: each answers
what its face can, raises the one RpcError for an error answer, and says what its face cannot do."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from llama_agent.common.errors import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp import types as mcp_types

from tests.clients import (
    AcpEditor,
    OpenAcpClient,
    OpenFaceClient,
    OpenLspClient,
    OpenMcpClient,
    RpcError,
    Step,
)
from tests.scripted_model import answer, call
from tests.wat_tools import tool_wasm

ECHO_THEN_ANSWER = {"turns": [call("echo", value="Something to echo"), answer("It said: Something to echo")]}
ECHO_STEP = Step("echo", {"value": "Something to echo"}, "Something to echo", False)


async def test_the_lsp_client_lists_invokes_runs_and_raises_rpc_errors(
    lsp_client: OpenLspClient, tools_dir: Path
) -> None:
    async with lsp_client("--tools-dir", tools_dir, script=ECHO_THEN_ANSWER) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert tools.keys() == {"echo", "print"}
        assert tools["echo"].input_schema["required"] == ["value"]
        called = await client.invoke("echo", {"value": "hi"})
        assert (called.texts, called.is_error, called.text) == (["hi"], False, "hi")
        with pytest.raises(RpcError) as unknown:
            await client.invoke("nope", {})
        assert unknown.value.code == INVALID_PARAMS and "nope" in unknown.value.message

        run = await client.run_agent("echo it", max_steps=3)
        assert (run.answer, run.stop_reason, run.steps) == (
            "It said: Something to echo",
            "answer",
            [ECHO_STEP],
        )
        assert run.updates[0]["kind"] == "begin" and run.updates[-1]["kind"] == "end"

        assert (await client.request("tools/list", []))["tools"]  # raw: params as given
        with pytest.raises(RpcError) as missing:
            await client.request("no/such/method")
        assert missing.value.code == METHOD_NOT_FOUND


async def test_the_acp_client_runs_prompts_with_their_updates_and_has_no_tool_calls_of_its_own(
    acp_client: OpenAcpClient, tools_dir: Path, tmp_path: Path
) -> None:
    script = {"turns": [*ECHO_THEN_ANSWER["turns"], answer("Again.")]}
    async with acp_client("--trusted-tools-dir", tools_dir, script=script) as client:
        run = await client.run_agent("echo it")
        assert (run.answer, run.stop_reason, run.steps) == (
            "It said: Something to echo",
            "end_turn",
            [ECHO_STEP],
        )
        kinds = [update.session_update for update in run.updates]
        assert kinds.index("tool_call") < kinds.index("tool_call_update") < kinds.index("agent_message_chunk")
        again = await client.run_agent("and again")  # the same session, only this prompt's updates
        assert (again.answer, again.steps) == ("Again.", [])
        assert client.editor.said() == "It said: Something to echoAgain."

        with pytest.raises(NotImplementedError, match="ACP has no tool listing"):
            await client.list_tools()
        with pytest.raises(NotImplementedError, match="ACP has no tool call"):
            await client.invoke("echo", {"value": "hi"})
        with pytest.raises(TypeError, match="max_steps"):
            await client.run_agent("hi", max_steps=2)

        with pytest.raises(RpcError) as relative:  # the SDK's call, the one error
            await client.new_session("relative")
        assert relative.value.code == INVALID_PARAMS and relative.value.message.startswith("cwd: ")
        opened = await client.request("session/new", {"cwd": str(tmp_path), "mcpServers": []})  # raw
        assert opened["sessionId"]
        with pytest.raises(RpcError) as missing:
            await client.request("no/such/method", {})
        assert missing.value.code == METHOD_NOT_FOUND


async def test_the_acp_editor_answers_permission_requests_in_order(
    acp_client: OpenAcpClient, tools_dir: Path, bundled_tools: Path, tmp_path: Path
) -> None:
    shutil.copy2(bundled_tools / "write_file.wasm", tools_dir / "write_file.wasm")
    (tools_dir / "write_file.policy.toml").write_text('workspace = "rw"\n')
    write = call("write_file", path="a.txt", content="hi")
    script = {"turns": [write, answer("not written"), write, answer("written")]}
    workspace = tmp_path / "project"
    workspace.mkdir()
    editor = AcpEditor(choices=["reject-once", "allow-once"])
    options = {"script": script, "editor": editor, "cwd": workspace}
    async with acp_client("--trusted-tools-dir", tools_dir, **options) as client:
        refused = await client.run_agent("write a.txt")
        assert [step.is_error for step in refused.steps] == [True], refused.steps
        assert not (workspace / "a.txt").exists()
        allowed = await client.run_agent("write a.txt")
        assert [step.is_error for step in allowed.steps] == [False], allowed.steps
    assert (workspace / "a.txt").read_text() == "hi"
    assert len(editor.asked) == 2


async def test_the_mcp_client_lists_and_calls_and_has_no_agent_run(
    mcp_client: OpenMcpClient, tools_dir: Path
) -> None:
    async with mcp_client("--tools-dir", tools_dir) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
        assert {"echo", "print"} <= tools.keys()
        assert tools["echo"].input_schema["required"] == ["value"]
        assert tools["echo"].raw["annotations"]["readOnlyHint"] is True
        called = await client.invoke("echo", {"value": "hi"})
        assert (called.texts, called.is_error) == (["hi"], False)
        # A call that cannot run as asked is a protocol error, as on the LSP face.
        with pytest.raises(RpcError) as wrong:
            await client.invoke("echo", {"value": 5})
        assert wrong.value.code == INVALID_PARAMS and "value" in wrong.value.message
        with pytest.raises(RpcError) as no_arguments:
            await client.invoke("echo", [])  # not an object: sent raw, as it is
        assert no_arguments.value.code == INVALID_PARAMS and "value" in no_arguments.value.message

        with pytest.raises(NotImplementedError, match="MCP has no agent run"):
            await client.run_agent("hi")

        assert (await client.request("ping")) == {}
        with pytest.raises(RpcError) as bad:
            await client.request("tools/call", {"name": 5})
        assert bad.value.code == INVALID_PARAMS and "name" in bad.value.message

        (tools_dir / "shout.wasm").write_bytes(tool_wasm("shout"))
        await client.wait_for_notification(mcp_types.ToolListChangedNotification, timeout=30)
        assert "shout" in {tool.name for tool in await client.list_tools()}


@pytest.mark.parametrize("face", ["lsp", "mcp"])
async def test_any_face_by_name(face_client: OpenFaceClient, tools_dir: Path, face: str) -> None:
    async with face_client(face, "--tools-dir", tools_dir) as client:
        assert client.face == face
        assert (await client.invoke("echo", {"value": "same"})).texts == ["same"]


async def test_a_daemon_that_dies_fails_the_requests_it_left_unanswered(
    mcp_client: OpenMcpClient, tools_dir: Path
) -> None:
    async with mcp_client("--tools-dir", tools_dir) as client:
        client.channel.process.kill()
        await asyncio.wait_for(client.channel.ended(), 10)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(client.request("ping"), 10)
        with pytest.raises(ConnectionError):  # the SDK's request, likewise
            await asyncio.wait_for(client.list_tools(), 10)
