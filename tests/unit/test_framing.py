"""The frame reader on its own: headers, resynchronisation, size cap and parse errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from llama_agent.common.errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from llama_agent.faces.lsp.framing import (
    MAX_LINE_BYTES,
    FrameReader,
    FrameStream,
    read_frame_length,
    serve_frames,
)
from llama_agent.faces.wire.strict_json import parse_json, refusal
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol.json_rpc import MsgId


class BytesReader:
    """A FrameReader over fixed bytes, as the pipe reader behaves: short reads at end of input."""

    def __init__(self, data: bytes) -> None:
        self._stream = asyncio.StreamReader()
        self._stream.feed_data(data)
        self._stream.feed_eof()

    async def readline(self) -> bytes:
        return await self._stream.readline()

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError as error:
            return error.partial

    async def read(self, n: int) -> bytes:
        return await self._stream.read(n)


def frame(body: bytes | dict[str, Any], headers: bytes = b"") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b"Content-Length: %d\r\n" % len(data) + headers + b"\r\n" + data


@pytest.mark.parametrize(
    ("data", "length"),
    [
        (b"Content-Length: 12\r\n\r\n", 12),
        (b"content-length:7\r\n\r\n", 7),
        (b"Content-Length: 5\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", 5),
        (b"Content-Type: x\r\nContent-Length: 9\r\n\r\n", 9),
        (b"Content-Length: 3\n\n", 3),  # bare LF, as some clients send
        (b"garbage line\r\nContent-Length: 4\r\n\r\n", 4),
        (b"leftover bytes{}Content-Length: 6\r\n\r\n", 6),  # a header glued to a bad frame's tail
        (b"\r\n\r\nContent-Length: 8\r\n\r\n", 8),  # blank lines before any header
        (b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 2),  # the last one counts
    ],
)
async def test_the_length_of_the_next_frame_is_found(data: bytes, length: int) -> None:
    assert await read_frame_length(BytesReader(data + b"rest")) == length


@pytest.mark.parametrize("data", [b"", b"Content-Length: 5\r\n", b"no headers at all\r\n"])
async def test_end_of_input_before_a_whole_header_block_is_none(data: bytes) -> None:
    assert await read_frame_length(BytesReader(data)) is None


class FakeProtocol:
    """The three entry points serve_frames uses, recording what it hands over and sends."""

    def __init__(self) -> None:
        self.handled: list[Any] = []
        self.sent: list[dict[str, Any]] = []

    def structure_message(self, data: dict[str, Any]) -> Any:
        return data

    def handle_message(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("method") == "explode":
            raise RuntimeError("a bug in a handler")
        self.handled.append(message)

    def send_message(self, data: dict[str, Any]) -> None:
        self.sent.append(data)


async def serve(data: bytes, max_frame_bytes: int = 1024) -> FakeProtocol:
    protocol = FakeProtocol()
    reader = cast(FrameReader, BytesReader(data))
    await serve_frames(reader, protocol, max_frame_bytes)
    return protocol


async def test_frames_are_handed_over_in_order() -> None:
    protocol = await serve(frame({"id": 1}) + frame({"id": 2}))
    assert protocol.handled == [{"id": 1}, {"id": 2}]


async def test_a_body_that_is_not_json_gets_a_parse_error_and_the_next_frame_is_read() -> None:
    protocol = await serve(frame(b"{not json") + frame({"id": 2}))
    assert protocol.handled == [{"id": 2}]
    assert [message["error"]["code"] for message in protocol.sent] == [PARSE_ERROR]
    assert protocol.sent[0]["id"] is None


async def test_an_oversized_frame_is_skipped_unread_and_the_next_one_served() -> None:
    protocol = await serve(frame(b"x" * 5000) + frame({"id": 2}), max_frame_bytes=1024)
    assert protocol.handled == [{"id": 2}]


async def test_a_failing_handler_does_not_end_the_loop() -> None:
    protocol = await serve(frame({"method": "explode"}) + frame({"id": 2}))
    assert protocol.handled == [{"id": 2}]


async def test_a_body_cut_short_by_end_of_input_is_dropped() -> None:
    protocol = await serve(frame({"id": 1}) + b'Content-Length: 50\r\n\r\n{"id": 2')
    assert protocol.handled == [{"id": 1}]


# -- strict JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b'{"id": NaN}',
        b"[1, Infinity]",
        b"1e400",
        b"-1e400",
        b"1" + b"0" * 400,  # an integer beyond a double's range
        b"9" * 5000,  # beyond what int() reads
        b'"\\ud800"',  # half a surrogate pair
        b'"a\\udfffb"',
        b'{"\\udbff": 1}',
        b'"\\ud800\\u0041"',
        b"\xff{}",
        "{}".encode("utf-16"),
        b"[" * 100_000 + b"]" * 100_000,  # too deep for the parser: RecursionError
        b"",
        b"{not json",
    ],
)
def test_what_is_not_strict_json_is_refused(body: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        parse_json(body)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"id": 1, "method": "x"}', {"id": 1, "method": "x"}),
        (b"1e308", 1e308),
        (b"1" + b"0" * 300, 10**300),
        (b"1e-400", 0.0),  # underflow is fine: it is still a number
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # a whole surrogate pair
        (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, not a surrogate
        (b"\xef\xbb\xbf[]", []),  # a byte order mark is ignored
        (b"[" * 500 + b"]" * 500, json.loads(b"[" * 500 + b"]" * 500)),
    ],
)
def test_strict_json_is_read(body: bytes, value: Any) -> None:
    assert parse_json(body) == value


# -- resynchronisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "length"),
    [
        (b"Content-Length: 12\r\n\r\n", 12),
        (b"garbage line\r\nContent-Length: 4\r\n\r\n", 4),
        (b"leftover bytes{}Content-Length: 6\r\n\r\n", 6),
        (b"Content-Length: " + b"9" * 5000 + b"\r\nContent-Length: 7\r\n\r\n", 7),  # not a length
        (b"Content-Length: -5\r\nContent-Length: 8\r\n\r\n", 8),
        (b"x" * (3 * MAX_LINE_BYTES) + b"Content-Length: 9\r\n\r\n", 9),  # a line too long to keep
    ],
)
async def test_the_frame_stream_finds_the_next_length(data: bytes, length: int) -> None:
    assert await read_frame_length(FrameStream(cast(FrameReader, BytesReader(data + b"rest")))) == length


async def test_the_frame_stream_reads_back_what_is_pushed_back() -> None:
    stream = FrameStream(cast(FrameReader, BytesReader(b"world\nagain")))
    stream.unread(b"hello ")
    assert await stream.readline() == b"hello world\n"
    assert await stream.readexactly(3) == b"aga"
    assert await stream.read(100) == b"in"
    assert await stream.read(100) == b""
    assert await stream.readline() == b""


def codes(protocol: FakeProtocol) -> list[int]:
    return [message["error"]["code"] for message in protocol.sent]


async def test_a_header_inside_a_body_starts_the_next_frame() -> None:
    # The Content-Length says 500; the next frame begins after 9 bytes.
    protocol = await serve(b'Content-Length: 500\r\n\r\n{"id": 1}' + frame({"id": 2}) + frame({"id": 3}))
    assert protocol.handled == [{"id": 2}, {"id": 3}]
    assert codes(protocol) == [PARSE_ERROR]


async def test_a_header_cut_by_the_end_of_a_body_is_read_again() -> None:
    # 12 bytes: the 9 of the body and "Con" of the next header.
    protocol = await serve(b'Content-Length: 12\r\n\r\n{"id": 1}' + frame({"id": 2}))
    assert protocol.handled == [{"id": 2}]
    assert codes(protocol) == [PARSE_ERROR]


async def test_an_oversized_frame_is_refused_and_ends_at_the_next_header() -> None:
    protocol = await serve(b"Content-Length: 999999999\r\n\r\n{}" + frame({"id": 2}), max_frame_bytes=1024)
    assert protocol.handled == [{"id": 2}]
    assert codes(protocol) == [INVALID_REQUEST]


async def test_non_standard_json_is_a_parse_error() -> None:
    too_deep = b"[" * 5000 + b"]" * 5000
    protocol = await serve(frame(b'{"id": NaN}') + frame(too_deep) + frame({"id": 2}), max_frame_bytes=20_000)
    assert protocol.handled == [{"id": 2}]
    assert codes(protocol) == [PARSE_ERROR, PARSE_ERROR]


async def test_any_value_is_handed_to_the_protocol_which_may_refuse_it() -> None:
    protocol = await serve(frame(b"[1, 2]") + frame(b"5") + frame({"id": 2}))
    assert protocol.handled == [[1, 2], 5, {"id": 2}]


class FailingProtocol(FakeProtocol):
    def structure_message(self, data: Any) -> Any:
        if data == {"structure": "fails"}:
            raise JsonRpcInvalidParams("cannot structure")
        return data

    def handle_message(self, message: Any) -> None:
        if message == {"handler": "recurses"}:
            raise RecursionError("maximum recursion depth exceeded")
        super().handle_message(message)


async def test_no_exception_from_the_protocol_ends_the_loop() -> None:
    protocol = FailingProtocol()
    data = frame({"structure": "fails"}) + frame({"handler": "recurses"}) + frame({"id": 2})
    await serve_frames(cast(FrameReader, BytesReader(data)), protocol)
    assert protocol.handled == [{"id": 2}]


@pytest.mark.parametrize(
    ("body", "code", "request_id"),
    [
        (b'{"jsonrpc":"2.0","id":7,"method":"m","params":{"x":NaN}}', INVALID_PARAMS, 7),
        (b'{"jsonrpc":"2.0","id":"a","method":"m","params":[1e400]}', INVALID_PARAMS, "a"),
        (b'{"jsonrpc":"2.0","id":"a","method":"m","params":[1' + b"0" * 400 + b"]}", INVALID_PARAMS, "a"),
        (b'{"jsonrpc":"2.0","id":"a","method":"m","params":["\\ud800"]}', INVALID_PARAMS, "a"),
        (b'{"jsonrpc":"2.0","id":7,"method":NaN}', INVALID_REQUEST, 7),
        (b'{"jsonrpc":Infinity,"id":7,"method":"m"}', INVALID_REQUEST, 7),
        # No usable id: a parse error, with id null.
        (b'{"jsonrpc":"2.0","id":NaN,"method":"m"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1e400,"method":"m"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1' + b"0" * 400 + b',"method":"m"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":"\\udc00","method":"m"}', PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":7,"method":"m","params":[' + b"9" * 5000 + b"]}", PARSE_ERROR, None),
        (
            b'{"jsonrpc":"2.0","id":7,"method":"m","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
            PARSE_ERROR,
            None,
        ),
        (b'{"jsonrpc":"2.0","id":7,"method":"m"', PARSE_ERROR, None),
        (b"[NaN]", PARSE_ERROR, None),
        (b'{"id":7,"x":NaN}', PARSE_ERROR, None),
    ],
)
def test_a_request_that_is_not_strict_json_is_refused_with_its_id_if_it_can_be_read(
    body: bytes, code: int, request_id: MsgId | None
) -> None:
    with pytest.raises((ValueError, RecursionError)) as raised:
        parse_json(body)
    rejection = refusal(body, raised.value)
    assert (rejection.code, rejection.id, rejection.answer) == (code, request_id, True)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","method":"m","params":[NaN]}',  # a notification: logged, not answered
        b'{"jsonrpc":"2.0","id":7,"result":Infinity}',  # a response: never answered
        b'{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"\\ud800"}}',
    ],
)
def test_a_notification_or_response_that_is_not_strict_json_is_not_answered(body: bytes) -> None:
    with pytest.raises(ValueError) as raised:
        parse_json(body)
    assert not refusal(body, raised.value).answer


async def test_a_request_with_nan_params_is_answered_with_its_id() -> None:
    protocol = await serve(frame(b'{"jsonrpc":"2.0","id":3,"method":"m","params":[NaN]}') + frame({"id": 2}))
    assert protocol.handled == [{"id": 2}]
    [answer] = protocol.sent
    assert (answer["id"], answer["error"]["code"]) == (3, INVALID_PARAMS)
