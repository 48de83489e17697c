"""Reads Content-Length frames from the client, surviving whatever arrives.

pygls' own reader stops understanding the stream after one bad header and hands
every parse error to a logger. This one resynchronises on the next
`Content-Length` header, skips oversized frames without holding them in memory,
and answers a body that is not JSON with JSON-RPC's parse error (-32700).

A header can never occur inside a JSON text: its letters are not allowed outside
a string and its line break is not allowed inside one. So a header found inside a
body means that body's Content-Length was too long: the body is dropped and the
header is read again as the start of the next frame, instead of the next frames
being swallowed until the wrong length is used up."""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Awaitable
from typing import Any, BinaryIO, Protocol

from pygls.io_ import StdinAsyncReader
from pygls.protocol.json_rpc import MsgId

from llama_agent.common.errors import INVALID_REQUEST, PARSE_ERROR
from llama_agent.faces.wire.strict_json import parse_json, refusal

log = logging.getLogger(__name__)


# Anywhere in a line, so a header glued to leftover bytes of a bad frame still counts. At most 19
# digits: a longer number is not a length (and int() refuses strings over 4,300 digits).
CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d{1,19})[ \t]*\r?\n$", re.IGNORECASE)
# A whole header line inside a body.
HEADER_IN_BODY = re.compile(rb"Content-Length:[ \t]*\d{1,19}[ \t]*\r?\n", re.IGNORECASE)
# The start of a header cut off by the end of a body that was too short to be the whole message.
PARTIAL_HEADER = re.compile(
    rb"(?:content-length:[ \t]*\d{0,19}[ \t]*\r?"
    rb"|c(?:o(?:n(?:t(?:e(?:n(?:t(?:-(?:l(?:e(?:n(?:g(?:t(?:h)?)?)?)?)?)?)?)?)?)?)?)?)?)\Z",
    re.IGNORECASE,
)


MAX_FRAME_BYTES = 64 * 1024 * 1024
READ_CHUNK = 1024 * 1024
# Header lines are short: past this, a line is garbage and only its tail is kept (a header may
# be glued to it).
MAX_LINE_BYTES = 64 * 1024
HEADER_OVERLAP = 256


class MessageHandler(Protocol):
    """What the frame loop hands messages to (AgentProtocol), and answers through."""

    def structure_message(self, data: Any) -> Any: ...

    def handle_message(self, message: Any) -> None: ...

    def send_message(self, message: dict[str, Any]) -> None: ...


class FrameReader(Protocol):
    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...

    def read(self, n: int) -> Awaitable[bytes]:
        """Up to `n` bytes, as soon as any are available; b"" at end of input."""
        ...


class _PipeReader:
    """stdin through the event loop itself: no thread hop per header line and body."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self) -> bytes:
        try:
            return await self._stream.readline()
        except ValueError:  # a line over the stream's limit: asyncio has dropped it
            return b"\0"

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError as error:
            return error.partial

    async def read(self, n: int) -> bytes:
        return await self._stream.read(n)


class _FileReader:
    """pygls' thread-backed reader, for a stdin that is a regular file (every read ends or fills)."""

    def __init__(self, reader: StdinAsyncReader) -> None:
        self._reader = reader

    def readline(self) -> Awaitable[bytes]:
        return self._reader.readline()

    def readexactly(self, n: int) -> Awaitable[bytes]:
        return self._reader.readexactly(n)

    def read(self, n: int) -> Awaitable[bytes]:
        return self._reader.readexactly(n)


async def open_reader(stdin: BinaryIO, fallback: StdinAsyncReader) -> FrameReader:
    """A non-blocking reader on `stdin` if it is a pipe or terminal, else a thread-backed one."""
    stream = asyncio.StreamReader(limit=MAX_FRAME_BYTES)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
    except (ValueError, OSError):  # a regular file, for instance
        return _FileReader(fallback)
    return _PipeReader(stream)


class FrameStream:
    """A FrameReader over `source` that can push bytes back, and whose lines have a bounded length."""

    def __init__(self, source: FrameReader) -> None:
        self._source = source
        self._buffer = bytearray()

    def unread(self, data: bytes) -> None:
        """Make `data` the next bytes read."""
        self._buffer[:0] = data

    async def readline(self) -> bytes:
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buffer) > MAX_LINE_BYTES:
                log.warning("skipping %d bytes without a line break", len(self._buffer) - HEADER_OVERLAP)
                del self._buffer[:-HEADER_OVERLAP]
            searched = len(self._buffer)
            if not await self._fill():
                return self._take(len(self._buffer))

    async def read(self, n: int) -> bytes:
        if not self._buffer and not await self._fill():
            return b""
        return self._take(min(n, len(self._buffer)))

    async def readexactly(self, n: int) -> bytes:
        """`n` bytes, or fewer at end of input."""
        while len(self._buffer) < n and await self._fill():
            pass
        return self._take(min(n, len(self._buffer)))

    async def _fill(self) -> bool:
        chunk = await self._source.read(READ_CHUNK)
        self._buffer += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class BodyEnd(enum.Enum):
    COMPLETE = "complete"
    HEADER = "a header inside it"  # the Content-Length was too long
    END_OF_INPUT = "end of input"


async def read_body(stream: FrameStream, length: int, keep: bool = True) -> tuple[bytes, BodyEnd]:
    """Up to `length` bytes of body, stopping early at end of input or at a header inside it.

    A header found inside is pushed back to be read as the next frame. Without `keep`, only
    the tail of the body is returned (enough to find a header cut off by its end).
    """
    body = bytearray()
    remaining = length
    while remaining > 0:
        chunk = await stream.read(min(remaining, READ_CHUNK))
        if not chunk:
            return bytes(body), BodyEnd.END_OF_INPUT
        remaining -= len(chunk)
        scan_from = max(0, len(body) - HEADER_OVERLAP)
        body += chunk
        header = HEADER_IN_BODY.search(body, scan_from)
        if header:
            stream.unread(bytes(body[header.start() :]))
            return bytes(body[: header.start()]), BodyEnd.HEADER
        if not keep:
            del body[:-HEADER_OVERLAP]
    return bytes(body), BodyEnd.COMPLETE


def push_back_partial_header(stream: FrameStream, rejected: bytes) -> None:
    """A rejected body may end with the start of the next frame's header: read that part again."""
    partial = PARTIAL_HEADER.search(rejected, max(0, len(rejected) - 64))
    if partial:
        stream.unread(partial.group())


async def serve_frames(
    reader: FrameReader,
    protocol: MessageHandler,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> None:
    """Feed each frame to `protocol` until end of input (or until cancelled).

    Nothing in a frame ends this loop: framing and JSON errors are answered here, the protocol
    answers or logs the rest, and any other failure is logged.
    """
    stream = FrameStream(reader)
    while True:
        length = await read_frame_length(stream)
        if length is None:
            return  # the client closed its end
        oversized = length > max_frame_bytes
        if oversized:
            log.error("dropping a %d-byte message: the limit is %d bytes", length, max_frame_bytes)
            _send_error(
                protocol,
                INVALID_REQUEST,
                f"Invalid request: a message may have at most {max_frame_bytes} bytes",
            )
        body, end = await read_body(stream, length, keep=not oversized)
        if end is BodyEnd.END_OF_INPUT:
            return
        if end is BodyEnd.HEADER:
            log.error("dropping a message cut short by a header after %d of its %d bytes", len(body), length)
            if not oversized:
                _send_error(
                    protocol,
                    PARSE_ERROR,
                    f"Parse error: a new message began after {len(body)} of this one's {length} bytes",
                )
            continue
        if oversized:
            push_back_partial_header(stream, body)
            continue
        if not deliver(body, protocol):
            push_back_partial_header(stream, body)


def deliver(body: bytes, protocol: MessageHandler) -> bool:
    """Hand one message's body to `protocol`; False if it is not JSON (answered, or logged, here).

    The frame loop's and the network face's (one message per WebSocket frame) alike."""
    try:
        value = parse_json(body)
    except (ValueError, RecursionError) as error:
        rejected = refusal(body, error)
        if rejected.answer:
            log.error("refusing a message that is not JSON (id %r): %s", rejected.id, error)
            _send_error(protocol, rejected.code, rejected.message, rejected.id)
        else:
            log.warning("ignoring a notification or response that is not JSON: %s", error)
        return False
    try:
        protocol.handle_message(protocol.structure_message(value))
    except Exception:  # a bug in a handler must not end the session
        log.exception("failed to handle a message")
    return True


async def read_frame_length(reader: FrameReader) -> int | None:
    """The Content-Length of the next frame, skipping anything that is not a header; None at end of input."""
    length: int | None = None
    while True:
        line = await reader.readline()
        if not line:
            return None
        match = CONTENT_LENGTH.search(line)
        if match:
            length = int(match.group(1))
        elif not line.strip() and length is not None:
            return length
        elif line.strip() and not line.lower().startswith(b"content-type:"):
            log.warning("skipping a line that is not a header: %r", line[:80])


def _send_error(protocol: MessageHandler, code: int, message: str, request_id: MsgId | None = None) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    protocol.send_message({"jsonrpc": "2.0", "id": request_id, "error": error})
