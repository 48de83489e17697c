"""How the MCP face describes a tool (its schema, and hints from what it is granted), and what it
answers itself rather than leave to the SDK."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from llama_agent.faces.mcp import checked_message, mcp_tool
from llama_agent.faces.wire.jsonrpc import Rejection
from llama_agent.runtime.tools.policy import DirGrant, Grants

from tests.unit.test_prompting import ECHO


def test_a_tool_that_can_write_nowhere_is_read_only_and_never_open_world() -> None:
    listed = mcp_tool(ECHO)
    assert (listed.name, listed.description, listed.inputSchema) == ("echo", "Echoes.", ECHO.input_schema)
    assert listed.annotations is not None
    assert (listed.annotations.readOnlyHint, listed.annotations.destructiveHint) == (True, False)
    assert listed.annotations.openWorldHint is False
    reads = dataclasses.replace(ECHO, grants=Grants(dirs=(DirGrant(Path("/w"), "/workspace", "ro"),)))
    assert mcp_tool(reads).annotations.readOnlyHint is True  # type: ignore[union-attr]


def test_a_tool_granted_a_writable_directory_is_not_read_only() -> None:
    writer = dataclasses.replace(ECHO, grants=Grants(dirs=(DirGrant(Path("/w"), "/workspace", "rw"),)))
    hints = mcp_tool(writer).annotations
    assert hints is not None
    assert (hints.readOnlyHint, hints.destructiveHint, hints.idempotentHint) == (False, True, False)


def request(method: str, **members: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, **members}


def test_an_unknown_method_is_method_not_found_and_bad_params_name_their_field() -> None:
    unknown = checked_message(request("server/discover"))
    assert isinstance(unknown, Rejection) and (unknown.code, unknown.id) == (-32601, 7)
    assert "server/discover" in unknown.message
    bad = checked_message(request("tools/call", params={"name": 5}))
    assert isinstance(bad, Rejection) and (bad.code, bad.id, bad.answer) == (-32602, 7, True)
    assert "params.name" in bad.message
    missing = checked_message(request("tools/call", params={}))
    assert isinstance(missing, Rejection) and "params.name" in missing.message


def test_empty_arrays_are_no_params_and_no_arguments_as_on_the_lsp_face() -> None:
    assert checked_message(request("tools/list", params=[])) == request("tools/list")
    call = checked_message(request("tools/call", params={"name": "echo", "arguments": []}))
    assert call == request("tools/call", params={"name": "echo", "arguments": {}})


def test_notifications_and_responses_the_sdk_cannot_read_are_dropped_unanswered() -> None:
    assert checked_message({"jsonrpc": "2.0", "method": "notifications/initialized"}) == {
        "jsonrpc": "2.0",
        "method": "notifications/initialized",
    }
    unreadable: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "method": "x", "params": [1]},
        {"jsonrpc": "2.0", "id": None, "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "id": 1, "error": "x"},
    ]
    for message in unreadable:
        dropped = checked_message(message)
        assert isinstance(dropped, Rejection) and not dropped.answer, message
