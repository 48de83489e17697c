"""JSON-RPC's rules for client messages, and what the protocol writes back, without a daemon."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any, cast

import pydantic
import pytest
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PROMPT_TOO_LONG,
    InternalError,
    InvalidParams,
    PromptTooLong,
)
from llama_agent.faces.lsp.protocol import AgentProtocol
from llama_agent.faces.lsp.server import AgentServer
from llama_agent.faces.wire.jsonrpc import (
    MAX_NESTING,
    SOURCE_ROOTS,
    Rejection,
    agent_error,
    check_message,
    client_safe_error,
    encode_json,
    message_id,
    nested_deeper_than,
)
from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError


@pytest.mark.parametrize("value", ["x", "", 0, -7, 10**300])
def test_strings_and_integers_are_ids(value: Any) -> None:
    assert message_id(value) == value


@pytest.mark.parametrize("value", [None, True, False, 1.0, 1.5, math.nan, {}, {"a": 1}, [], [1]])
def test_nothing_else_is_an_id(value: Any) -> None:
    assert message_id(value) is None


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_counted_from_the_message_itself() -> None:
    assert not nested_deeper_than(nested(3), 3)
    assert nested_deeper_than(nested(4), 3)
    assert nested_deeper_than({"a": [{"b": []}]}, 3)
    assert not nested_deeper_than({"a": [{"b": 1}], "c": {}}, 3)
    assert not nested_deeper_than("scalar", 0)
    assert nested_deeper_than(nested(100_000), MAX_NESTING)  # no recursion to run out of


REQUEST = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}


@pytest.mark.parametrize(
    "message",
    [
        REQUEST,
        {**REQUEST, "params": {}},
        {**REQUEST, "params": []},
        {**REQUEST, "params": None},
        {**REQUEST, "id": "seven"},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 3}},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "x"}},
        {"jsonrpc": "2.0", "method": "exit"},
        {"jsonrpc": "2.0", "method": "exit", "params": None},
        {"jsonrpc": "2.0", "method": "exit", "params": {}},
        {"jsonrpc": "2.0", "method": "exit", "params": []},
        {"jsonrpc": "2.0", "id": 1, "result": None},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}},
        {**REQUEST, "params": {"deep": nested(MAX_NESTING - 3)}},
    ],
)
def test_well_formed_messages_pass(message: dict[str, Any]) -> None:
    assert check_message(message) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ([], Rejection(INVALID_REQUEST, "Invalid request: an empty batch")),
        ([REQUEST], Rejection(INVALID_REQUEST, "")),
        (5, Rejection(INVALID_REQUEST, "")),
        (None, Rejection(INVALID_REQUEST, "")),
        ({}, Rejection(INVALID_REQUEST, "")),
        ({"jsonrpc": "2.0", "id": 7}, Rejection(INVALID_REQUEST, "", 7)),
        ({**REQUEST, "id": {}}, Rejection(INVALID_REQUEST, "")),
        ({**REQUEST, "id": [7]}, Rejection(INVALID_REQUEST, "")),
        ({**REQUEST, "id": True}, Rejection(INVALID_REQUEST, "")),
        ({**REQUEST, "id": None}, Rejection(INVALID_REQUEST, "")),
        ({**REQUEST, "id": 7.0}, Rejection(INVALID_REQUEST, "")),
        ({**REQUEST, "jsonrpc": "1.0"}, Rejection(INVALID_REQUEST, "", 7)),
        ({"id": 7, "method": "tools/list"}, Rejection(INVALID_REQUEST, "", 7)),
        ({**REQUEST, "method": 5}, Rejection(INVALID_REQUEST, "", 7)),
        ({**REQUEST, "method": None}, Rejection(INVALID_REQUEST, "", 7)),
        ({**REQUEST, "params": "x"}, Rejection(INVALID_PARAMS, "", 7)),
        ({**REQUEST, "params": 5}, Rejection(INVALID_PARAMS, "", 7)),
        ({**REQUEST, "params": nested(MAX_NESTING)}, Rejection(INVALID_REQUEST, "", 7)),
        # Notifications: never answered.
        ({"jsonrpc": "2.0", "method": "$/cancelRequest"}, Rejection(INVALID_PARAMS, "", answer=False)),
        (
            {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {}},
            Rejection(INVALID_PARAMS, "", answer=False),
        ),
        (
            {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": {}}},
            Rejection(INVALID_PARAMS, "", answer=False),
        ),
        (
            {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": []},
            Rejection(INVALID_PARAMS, "", answer=False),
        ),
        (
            {"jsonrpc": "2.0", "method": "exit", "params": {"now": 1}},
            Rejection(INVALID_PARAMS, "", answer=False),
        ),
        ({"jsonrpc": "2.0", "method": "exit", "params": [1]}, Rejection(INVALID_PARAMS, "", answer=False)),
        ({"jsonrpc": "1.0", "method": "exit"}, Rejection(INVALID_REQUEST, "", answer=False)),
        ({"method": "exit"}, Rejection(INVALID_REQUEST, "", answer=False)),
        (
            {"jsonrpc": "2.0", "method": "initialized", "params": "x"},
            Rejection(INVALID_PARAMS, "", answer=False),
        ),
        # Responses: never answered either.
        ({"jsonrpc": "1.0", "id": 1, "result": 1}, Rejection(INVALID_REQUEST, "", answer=False)),
        ({"jsonrpc": "2.0", "id": {}, "result": 1}, Rejection(INVALID_REQUEST, "", answer=False)),
        ({"jsonrpc": "2.0", "id": None, "result": 1}, Rejection(INVALID_REQUEST, "", answer=False)),
        ({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}}, Rejection(INVALID_REQUEST, "", answer=False)),
    ],
)
def test_malformed_messages_are_refused(message: Any, expected: Rejection) -> None:
    rejection = check_message(message)
    assert rejection is not None
    assert (rejection.code, rejection.id, rejection.answer) == (expected.code, expected.id, expected.answer)
    if expected.message:
        assert rejection.message == expected.message


def test_a_batch_is_refused_as_such() -> None:
    rejection = check_message([REQUEST, REQUEST])
    assert rejection is not None
    assert "batches are not supported" in rejection.message


def test_non_finite_numbers_are_never_encoded() -> None:
    assert encode_json({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": "NaN"}) == (
        '{"a": null, "b": [null, null, 1.5], "c": "NaN"}'
    )
    assert encode_json({"a": 1}) == '{"a": 1}'
    assert encode_json("é") == '"\\u00e9"'  # ASCII: its length is its size in bytes


def test_an_internal_error_tells_only_the_exception_type() -> None:
    try:
        raise OverflowError(f"int too large, see {SOURCE_ROOTS[0]}/x.py")
    except OverflowError:
        error = JsonRpcInternalError.of(sys.exc_info()).to_response_error()  # type: ignore[no-untyped-call]
    assert "traceback" in error.data
    safe = client_safe_error(error)
    assert safe.code == INTERNAL_ERROR
    assert safe.message == "Internal error (OverflowError): the daemon's log has the details"
    assert safe.data is None


def test_an_internal_error_of_ours_stays_as_it_is() -> None:
    error = types.ResponseError(INTERNAL_ERROR, InternalError("KeyError").message)
    assert client_safe_error(error) == error
    assert client_safe_error(client_safe_error(error)) == error


def test_every_failure_is_one_of_the_daemons_errors(caplog: pytest.LogCaptureFixture) -> None:
    refused = InvalidParams("bad size", "size")
    assert agent_error(refused) is refused
    try:
        pydantic.TypeAdapter(dict[str, int]).validate_python({"size": "big"})
    except pydantic.ValidationError as error:
        invalid = agent_error(error)
    assert (invalid.code, invalid.message) == (
        INVALID_PARAMS,
        "invalid params: size: Input should be a valid integer, unable to parse string as an integer",
    )
    bug = agent_error(KeyError("x"), "a test")
    assert (bug.code, bug.message, bug.data) == (
        INTERNAL_ERROR,
        "Internal error (KeyError): the daemon's log has the details",
        None,
    )
    [logged] = [record for record in caplog.records if record.exc_info]
    assert logged.getMessage().startswith("a test failed") and logged.levelname == "ERROR"


def test_other_errors_lose_tracebacks_and_source_paths_only() -> None:
    error = types.ResponseError(
        INVALID_PARAMS, f"bad value in {SOURCE_ROOTS[-1]}/module.py", {"field": "x", "traceback": ["..."]}
    )
    safe = client_safe_error(error)
    assert safe.code == INVALID_PARAMS
    assert safe.data == {"field": "x"}
    assert all(root not in safe.message for root in SOURCE_ROOTS)
    assert safe.message.startswith("bad value in …")
    plain = types.ResponseError(INVALID_PARAMS, "'name' must be a string", {"tool": "/tools/echo.wasm"})
    assert client_safe_error(plain) == plain


# -- the protocol, in process -----------------------------------------------------------------


class Frames:
    """A writer that parses what the protocol writes, strictly."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        header, _, body = data.partition(b"\r\n\r\n")
        assert header.startswith(b"Content-Length: %d\r\n" % len(body))
        self.messages.append(json.loads(body, parse_constant=_not_json))

    def close(self) -> None:
        pass


def _not_json(name: str) -> Any:
    raise AssertionError(f"{name} written")


@pytest.fixture
def protocol() -> AgentProtocol:
    server = AgentServer()  # unconfigured: the protocol and its error reporting, no services
    server.protocol.set_writer(Frames())

    @server.feature("test/answer")
    def answer(ls: AgentServer, params: Any) -> Any:
        return {"nan": {"value": math.nan, "list": [math.inf]}, "object": {"value": object()}}[params["kind"]]

    @server.feature("test/fail")
    def fail(ls: AgentServer, params: Any) -> Any:
        raise OverflowError(f"int too large, see {SOURCE_ROOTS[0]}/x.py")

    @server.feature("test/refuse")
    async def refuse(ls: AgentServer, params: Any) -> Any:
        raise {"too long": PromptTooLong(900, 512), "bad field": InvalidParams("bad size", "size")}[
            params["kind"]
        ]

    return server.protocol


def receive(protocol: AgentProtocol, message: Any) -> list[dict[str, Any]]:
    """What `protocol` writes back for `message`."""
    frames = cast(Frames, protocol.writer)
    before = len(frames.messages)
    protocol.handle_message(protocol.structure_message(message))
    return frames.messages[before:]


async def receive_later(protocol: AgentProtocol, message: Any) -> list[dict[str, Any]]:
    """What `protocol` writes back for `message` handled by a coroutine, once it has run."""
    frames = cast(Frames, protocol.writer)
    before = len(frames.messages)
    protocol.handle_message(protocol.structure_message(message))
    for _ in range(100):
        if len(frames.messages) > before:
            break
        await asyncio.sleep(0.01)
    return frames.messages[before:]


def test_a_notification_method_called_with_an_id_is_refused(protocol: AgentProtocol) -> None:
    for method in ("initialized", "exit", "$/cancelRequest"):
        [answer] = receive(protocol, {"jsonrpc": "2.0", "id": "n", "method": method, "params": {"id": 1}})
        assert answer["id"] == "n"
        assert answer["error"]["code"] == INVALID_REQUEST
        assert "notification" in answer["error"]["message"]


def test_malformed_notifications_are_dropped(protocol: AgentProtocol) -> None:
    for message in [
        {"jsonrpc": "2.0", "method": "$/cancelRequest"},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": {}}},
        {"jsonrpc": "2.0", "method": "$/setTrace", "params": {}},
        {"jsonrpc": "2.0", "method": "initialized"},
        {"jsonrpc": "2.0", "method": "initialize"},
        {"jsonrpc": "2.0", "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit", "params": ["now"]},
        {"jsonrpc": "2.0", "method": "no/such/notification"},
    ]:
        assert receive(protocol, message) == []
    assert not protocol.shut_down


def test_an_unknown_notification_is_logged_at_debug_level(
    protocol: AgentProtocol, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert receive(protocol, {"jsonrpc": "2.0", "method": "$/whatever"}) == []
    [record] = [record for record in caplog.records if "$/whatever" in record.getMessage()]
    assert record.levelname == "DEBUG"


def test_after_shutdown_requests_are_refused_and_exit_exits_with_0(protocol: AgentProtocol) -> None:
    [answer] = receive(protocol, {"jsonrpc": "2.0", "id": 1, "method": "shutdown"})
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": None}
    [refused] = receive(protocol, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert refused["id"] == 2
    assert refused["error"] == {"code": INVALID_REQUEST, "message": "the server is shutting down"}
    assert receive(protocol, {"jsonrpc": "2.0", "method": "initialized", "params": {}}) == []
    assert receive(protocol, {"jsonrpc": "2.0", "method": "exit", "params": {"x": 1}}) == []  # malformed
    with pytest.raises(SystemExit) as exited:
        receive(protocol, {"jsonrpc": "2.0", "method": "exit", "params": []})  # as Neovim's Lua may send
    assert exited.value.code == 0


def test_exit_without_shutdown_exits_with_1(protocol: AgentProtocol) -> None:
    with pytest.raises(SystemExit) as exited:
        receive(protocol, {"jsonrpc": "2.0", "method": "exit"})
    assert exited.value.code == 1


def test_an_answer_holding_nan_is_sent_with_null(protocol: AgentProtocol) -> None:
    request = {"jsonrpc": "2.0", "id": "r", "method": "test/answer", "params": {"kind": "nan"}}
    assert receive(protocol, request) == [
        {"jsonrpc": "2.0", "id": "r", "result": {"value": None, "list": [None]}}
    ]


def test_an_answer_that_cannot_be_encoded_becomes_an_internal_error(protocol: AgentProtocol) -> None:
    request = {"jsonrpc": "2.0", "id": "r", "method": "test/answer", "params": {"kind": "object"}}
    [answer] = receive(protocol, request)
    assert answer["id"] == "r"
    assert answer["error"]["code"] == INTERNAL_ERROR


def test_a_failing_handler_is_answered_without_its_traceback_or_paths(protocol: AgentProtocol) -> None:
    [answer] = receive(protocol, {"jsonrpc": "2.0", "id": 5, "method": "test/fail", "params": {}})
    assert answer == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {
            "code": INTERNAL_ERROR,
            "message": "Internal error (OverflowError): the daemon's log has the details",
        },
    }


async def test_the_daemons_errors_are_answered_with_their_code_message_and_data(
    protocol: AgentProtocol,
) -> None:
    [too_long] = await receive_later(
        protocol, {"jsonrpc": "2.0", "id": 6, "method": "test/refuse", "params": {"kind": "too long"}}
    )
    assert too_long["error"] == {
        "code": PROMPT_TOO_LONG,
        "message": PromptTooLong(900, 512).message,
        "data": {"promptTokens": 900, "contextSize": 512},
    }
    [bad] = await receive_later(
        protocol, {"jsonrpc": "2.0", "id": 7, "method": "test/refuse", "params": {"kind": "bad field"}}
    )
    assert bad["error"] == {"code": INVALID_PARAMS, "message": "bad size", "data": {"field": "size"}}


def test_an_unknown_method_is_answered_as_on_every_face(protocol: AgentProtocol) -> None:
    [answer] = receive(protocol, {"jsonrpc": "2.0", "id": 8, "method": "server/discover"})
    assert answer == {
        "jsonrpc": "2.0",
        "id": 8,
        "error": {"code": METHOD_NOT_FOUND, "message": "Method not found: server/discover"},
    }


def test_a_notification_holding_nan_is_sent_with_null(protocol: AgentProtocol) -> None:
    protocol.notify("$/progress", {"token": "t", "value": {"rate": math.inf}})
    assert cast(Frames, protocol.writer).messages == [
        {"jsonrpc": "2.0", "method": "$/progress", "params": {"token": "t", "value": {"rate": None}}}
    ]


def test_a_notification_that_cannot_be_encoded_is_dropped(protocol: AgentProtocol) -> None:
    protocol.notify("tools/didChange", {"value": object()})
    assert cast(Frames, protocol.writer).messages == []
