"""How the MCP face describes a tool (its schema, and hints from what it is granted), and what it
answers itself rather than leave to the SDK."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SERVER_NOT_INITIALIZED,
    PromptTooLong,
)
from llama_agent.faces.mcp import McpMessages, answering_errors, mcp_tool, served_methods
from llama_agent.faces.wire.jsonrpc import Rejection
from llama_agent.runtime.tools.policy import DirGrant, Grants
from mcp import types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError

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


INITIALIZE = request(
    "initialize",
    params={"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
)


def tools_server() -> Server[Any, Any]:
    """An SDK server with the handlers the face registers: tools/list and tools/call."""
    server: Server[Any, Any] = Server("test")

    async def handled(request: Any) -> types.ServerResult:
        return types.ServerResult(types.ListToolsResult(tools=[]))

    server.request_handlers[types.ListToolsRequest] = handled
    server.request_handlers[types.CallToolRequest] = handled
    return server


def initialized() -> McpMessages:
    checked = McpMessages(served_methods(tools_server()))
    assert checked(INITIALIZE) == INITIALIZE
    return checked


def test_the_face_serves_what_it_has_handlers_for() -> None:
    assert served_methods(tools_server()) == {"initialize", "ping", "tools/list", "tools/call"}


def test_an_unknown_or_unserved_method_is_method_not_found_naming_it() -> None:
    checked = initialized()
    for method in ("server/discover", "resources/list", "prompts/get", "logging/setLevel"):
        unknown = checked(request(method, params={"name": "x", "arguments": []}))
        assert isinstance(unknown, Rejection) and (unknown.code, unknown.id) == (METHOD_NOT_FOUND, 7)
        assert unknown.message == f"Method not found: {method}"


def test_bad_params_name_their_field() -> None:
    checked = initialized()
    bad = checked(request("tools/call", params={"name": 5}))
    assert isinstance(bad, Rejection) and (bad.code, bad.id, bad.answer) == (INVALID_PARAMS, 7, True)
    assert "params.name" in bad.message
    missing = checked(request("tools/call", params={}))
    assert isinstance(missing, Rejection) and "params.name" in missing.message


def test_a_request_before_initialize_is_not_initialized_but_ping() -> None:
    checked = McpMessages(served_methods(tools_server()))
    early = checked(request("tools/list"))
    assert isinstance(early, Rejection) and (early.code, early.id) == (SERVER_NOT_INITIALIZED, 7)
    assert early.message == "the server is not initialized: send `initialize` first"
    unknown = checked(request("server/discover"))  # as LSP: an unknown method is that first
    assert isinstance(unknown, Rejection) and unknown.code == METHOD_NOT_FOUND
    assert checked(request("ping")) == request("ping")
    refused = checked(request("initialize", params={}))  # not initialized by a refused one
    assert isinstance(refused, Rejection) and refused.code == INVALID_PARAMS
    assert isinstance(checked(request("tools/list")), Rejection)
    assert checked(INITIALIZE) == INITIALIZE
    assert checked(request("tools/list")) == request("tools/list")


def test_empty_arrays_are_no_params_and_no_arguments_as_on_the_lsp_face() -> None:
    checked = initialized()
    assert checked(request("tools/list", params=[])) == request("tools/list")
    call = checked(request("tools/call", params={"name": "echo", "arguments": []}))
    assert call == request("tools/call", params={"name": "echo", "arguments": {}})


def test_notifications_and_responses_the_sdk_cannot_read_are_dropped_unanswered() -> None:
    checked_message = initialized()
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


async def test_a_handlers_failure_is_an_mcp_error_as_on_every_face(caplog: pytest.LogCaptureFixture) -> None:
    server: Server[Any, Any] = Server("test")

    async def too_long(request: Any) -> types.ServerResult:
        raise PromptTooLong(900, 512)

    async def broken(request: Any) -> types.ServerResult:
        raise KeyError("x")

    server.request_handlers[types.ListToolsRequest] = too_long
    server.request_handlers[types.CallToolRequest] = broken
    answering_errors(server)
    with pytest.raises(McpError) as refused:
        await server.request_handlers[types.ListToolsRequest](types.ListToolsRequest(method="tools/list"))
    assert refused.value.error == types.ErrorData(
        code=PromptTooLong.code,
        message=PromptTooLong(900, 512).message,
        data={"promptTokens": 900, "contextSize": 512},
    )
    call = types.CallToolRequest(method="tools/call", params=types.CallToolRequestParams(name="x"))
    with pytest.raises(McpError) as failed:  # not the SDK's code 0 with the exception's text
        await server.request_handlers[types.CallToolRequest](call)
    assert failed.value.error == types.ErrorData(
        code=INTERNAL_ERROR, message="Internal error (KeyError): the daemon's log has the details"
    )
    assert any(record.exc_info for record in caplog.records)  # the traceback is the log's
