"""The line reader and writer of the ACP and MCP faces: lines in chunks, a bound that holds
whatever the chunks are, and only strict JSON out."""

from __future__ import annotations

import json

from llama_agent.common.errors import INTERNAL_ERROR, INVALID_PARAMS
from llama_agent.faces.wire.lines import LINE_TOO_LONG, LineReader, LineTooLong, encode_line


class Chunks:
    """Input arriving in the given pieces, then its end."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def read(self, n: int) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        self._chunks[:0] = [chunk[n:]] if len(chunk) > n else []
        return chunk[:n]


async def read_all(reader: LineReader) -> list[bytes | LineTooLong]:
    lines: list[bytes | LineTooLong] = []
    while (line := await reader.readline()) is not None:
        lines.append(line)
    return lines


async def test_lines_are_found_across_and_within_chunks_and_the_last_needs_no_line_break() -> None:
    reader = LineReader(Chunks(b'{"a":', b"1}\n{}\r\n\n", b"x\ny", b"z"))
    assert await read_all(reader) == [b'{"a":1}', b"{}\r", b"", b"x", b"yz"]


async def test_a_line_over_the_limit_is_refused_once_and_skipped_to_its_end() -> None:
    reader = LineReader(Chunks(b"12345", b"67890", b"abc", b"def\nok\n"), max_line_bytes=8)
    assert await read_all(reader) == [LINE_TOO_LONG, b"ok"]


async def test_the_limit_is_the_limit_whatever_the_chunks() -> None:
    full = b"x" * 8
    for chunks in [(full + b"\nok\n",), (full, b"\nok\n"), (b"x" * 4, b"x" * 4 + b"\nok\n")]:
        assert await read_all(LineReader(Chunks(*chunks), max_line_bytes=8)) == [full, b"ok"]
    for chunks in [(full + b"x\nok\n",), (full, b"x\nok\n"), (b"x" * 5, b"x" * 4 + b"\nok\n")]:
        assert await read_all(LineReader(Chunks(*chunks), max_line_bytes=8)) == [LINE_TOO_LONG, b"ok"]


async def test_a_line_that_never_ends_is_refused_and_not_kept() -> None:
    reader = LineReader(Chunks(*[b"[" * 1000] * 50), max_line_bytes=4000)
    assert await reader.readline() is LINE_TOO_LONG
    assert await reader.readline() is None  # the rest is skipped, and not a line of its own


def test_what_is_written_is_strict_json_and_an_answer_that_is_not_json_is_an_internal_error() -> None:
    line = encode_line({"jsonrpc": "2.0", "id": 1, "result": {"x": float("nan"), "y": float("inf")}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"jsonrpc": "2.0", "id": 1, "result": {"x": None, "y": None}}
    broken = json.loads(encode_line({"jsonrpc": "2.0", "id": 2, "result": {"x": object()}}))
    assert broken["id"] == 2 and broken["error"]["code"] == INTERNAL_ERROR
    # An error whose data is not JSON (pydantic's may hold exceptions) keeps its code and message.
    odd = {
        "code": INVALID_PARAMS,
        "message": "Invalid params",
        "data": {"errors": [{"ctx": ValueError("x")}]},
    }
    sent = json.loads(encode_line({"jsonrpc": "2.0", "id": 3, "error": odd}))
    assert sent["error"] == {"code": INVALID_PARAMS, "message": "Invalid params"}


def test_an_error_carries_nothing_for_the_log_only() -> None:
    internal = {
        "code": INTERNAL_ERROR,
        "message": "KeyError: 'x'",
        "data": {"details": "/usr/lib/python3/x.py"},
    }
    sent = json.loads(encode_line({"jsonrpc": "2.0", "id": 3, "error": internal}))
    assert sent["error"] == {
        "code": INTERNAL_ERROR,
        "message": "Internal error (KeyError): the daemon's log has the details",
    }
    invalid = {"code": INVALID_PARAMS, "message": "bad", "data": {"field": "x", "traceback": ["..."]}}
    assert json.loads(encode_line({"jsonrpc": "2.0", "id": 4, "error": invalid}))["error"] == {
        "code": INVALID_PARAMS,
        "message": "bad",
        "data": {"field": "x"},
    }
