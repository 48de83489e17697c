"""What the ACP face answers itself, before the SDK sees a message, and how the SDK is handed the
face's failures: as every face answers them, the reason in the message."""

from __future__ import annotations

import inspect
from typing import Any

import acp
import pytest
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SERVER_NOT_INITIALIZED,
    PromptTooLong,
)
from llama_agent.faces.acp import AcpFace, AcpMessages, AnsweringErrors, session_folder
from llama_agent.faces.wire.jsonrpc import Rejection


def request(method: str, **members: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, **members}


INITIALIZE = request("initialize", params={"protocolVersion": 1})


def initialized() -> AcpMessages:
    checked = AcpMessages(AcpFace)
    assert checked(INITIALIZE) == INITIALIZE
    return checked


def test_an_unknown_or_unserved_method_is_method_not_found_naming_it() -> None:
    checked = initialized()
    for method in ("server/discover", "session/load", "_vendor/extension", ""):
        refused = checked(request(method, params={}))
        assert isinstance(refused, Rejection) and (refused.code, refused.id) == (METHOD_NOT_FOUND, 7)
        assert refused.message == f"Method not found: {method}"


def test_a_request_before_initialize_is_not_initialized() -> None:
    checked = AcpMessages(AcpFace)
    early = checked(request("session/new", params={"cwd": "/", "mcpServers": []}))
    assert isinstance(early, Rejection) and (early.code, early.id) == (SERVER_NOT_INITIALIZED, 7)
    assert early.message == "the server is not initialized: send `initialize` first"
    refused = checked(request("initialize", params={}))
    assert isinstance(refused, Rejection) and refused.code == INVALID_PARAMS
    assert isinstance(checked(request("session/new", params={"cwd": "/", "mcpServers": []})), Rejection)
    assert checked(INITIALIZE) == INITIALIZE
    new = request("session/new", params={"cwd": "/", "mcpServers": []})
    assert checked(new) == new


def test_bad_params_name_the_field_and_the_reason_in_the_message() -> None:
    refused = initialized()(request("session/new", params={"cwd": 5, "mcpServers": []}))
    assert isinstance(refused, Rejection) and refused.code == INVALID_PARAMS
    assert refused.message == "invalid params for session/new: cwd: Input should be a valid string"


@pytest.mark.parametrize("params", [[], None, {}, "missing"])
def test_missing_null_and_empty_array_params_are_none(params: Any) -> None:
    message = request("session/new") if params == "missing" else request("session/new", params=params)
    refused = initialized()(message)
    assert isinstance(refused, Rejection) and refused.code == INVALID_PARAMS
    assert refused.message == (
        "invalid params for session/new: cwd: Field required; mcpServers: Field required"
    )


def test_notifications_unknown_or_malformed_are_dropped_unanswered() -> None:
    checked = initialized()
    notifications: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "method": "no/such/notification"},
        {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": 5}},
        {"jsonrpc": "2.0", "method": "session/cancel"},
    ]
    for notification in notifications:
        dropped = checked(notification)
        assert isinstance(dropped, Rejection) and not dropped.answer, notification
    cancel = {"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": "s"}}
    assert checked(cancel) == cancel


def test_a_cancel_stops_the_prompt_as_it_is_read_and_nothing_else_does() -> None:
    """Before the SDK dispatches it: a permission answer read after it is never acted on."""
    stopped: list[str] = []
    checked = AcpMessages(AcpFace, stopped.append)
    checked(INITIALIZE)
    checked({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": 5}})  # malformed
    checked(request("session/cancel", params={"sessionId": "a"}))  # a request: no such method
    checked(request("session/prompt", params={"sessionId": "b", "prompt": []}))
    assert stopped == []
    checked({"jsonrpc": "2.0", "method": "session/cancel", "params": {"sessionId": "s-1"}})
    assert stopped == ["s-1"]


class Failing:
    """A face whose methods fail: with the daemon's error, with a bug, with the SDK's error."""

    def on_connect(self, conn: Any) -> None:
        self.connected = conn

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> None:
        raise PromptTooLong(900, 512)

    async def new_session(self, cwd: str, **kwargs: Any) -> None:
        session_folder(cwd)
        raise KeyError("x")

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        raise acp.RequestError(-32000, "as it is")


async def test_a_methods_failure_is_answered_with_its_code_and_readable_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    face = Failing()
    answering: Any = AnsweringErrors(face)
    answering.on_connect("conn")  # what is not a coroutine is the face's own
    assert face.connected == "conn"
    assert inspect.signature(answering.prompt) == inspect.signature(face.prompt)  # the SDK reads it
    with pytest.raises(acp.RequestError) as too_long:
        await answering.prompt("s", [])
    assert (too_long.value.code, str(too_long.value), too_long.value.data) == (
        PromptTooLong.code,
        PromptTooLong(900, 512).message,
        {"promptTokens": 900, "contextSize": 512},
    )
    with pytest.raises(acp.RequestError) as relative:
        await answering.new_session("relative")
    assert relative.value.code == INVALID_PARAMS
    assert str(relative.value) == "cwd: not an absolute path: 'relative'"
    with pytest.raises(acp.RequestError) as bug:
        await answering.new_session("/")
    assert (bug.value.code, str(bug.value)) == (
        INTERNAL_ERROR,
        "Internal error (KeyError): the daemon's log has the details",
    )
    assert any(record.exc_info for record in caplog.records)  # the traceback is the log's
    with pytest.raises(acp.RequestError) as own:
        await answering.cancel("s")
    assert (own.value.code, str(own.value)) == (-32000, "as it is")
    with pytest.raises(AttributeError):
        answering.load_session  # noqa: B018 (the SDK's getattr finds no such method)
