"""One JSON-RPC message per line on stdio, for the ACP and MCP faces: bounded, strict, answered.

The SDKs' own stdio transports read a line whole however long it is (a line that never ends
grows the process without bound), parse it with Python's lenient json module (NaN, Infinity)
and end or wedge on a line that is JSON but not a message (`1` ends ACP's agent). Here a line
is read in chunks and, past `MAX_LINE_BYTES`, dropped without being stored; it is parsed as
strictly as the LSP face parses a frame (`framing.parse_json`) and checked by the same rules
(`jsonrpc.check_message`); whatever is wrong is answered here as the LSP face answers it, and
only well-formed messages reach the SDK. What goes out is strict JSON, one message a line, and
an error carries nothing for the daemon's log only (`jsonrpc.client_safe_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import stat
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from lsprotocol import types as lsp

from llama_agent.common.errors import INTERNAL_ERROR, INVALID_REQUEST
from llama_agent.faces.wire.jsonrpc import (
    Rejection,
    brief,
    check_message,
    client_safe_error,
    encode_json,
    message_id,
)
from llama_agent.faces.wire.strict_json import parse_json, refusal

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# A message (a line) may have this many bytes: room for a prompt with pasted files, and little
# enough to hold while it is read. A longer line is answered and skipped without being stored.
MAX_LINE_BYTES = 16 * MIB
READ_CHUNK = 256 * 1024
# What the pipe reader buffers ahead of the line reader (asyncio pauses reading at twice this).
PIPE_BUFFER_BYTES = 1 * MIB
# What may be left around a line: JSON's own whitespace and a CRLF's carriage return.
LINE_PADDING = b" \t\r\n"
NO_BATCHES = "Invalid request: batches are not supported, send one message per line"

# Checks a face adds to JSON-RPC's for a well-formed message (say, its params' types): a
# Rejection, or the message to hand on (possibly normalised).
MessageCheck = Callable[[dict[str, Any]], Rejection | dict[str, Any]]


class LineTooLong(enum.Enum):
    """Stands for a line over the limit, which has been (or is being) dropped unread."""

    LINE_TOO_LONG = "line too long"


LINE_TOO_LONG = LineTooLong.LINE_TOO_LONG


class ChunkSource(Protocol):
    async def read(self, n: int) -> bytes:
        """Up to `n` bytes, as soon as any are available; b"" at end of input."""
        ...


class _PipeSource:
    """stdin through the event loop: a pipe, a socket or a terminal."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def read(self, n: int) -> bytes:
        return await self._stream.read(n)


class _FileSource:
    """A stdin the event loop cannot watch (a regular file): read on a thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(os.read, self._fd, n)


async def open_source(stdin: BinaryIO) -> ChunkSource:
    stream = asyncio.StreamReader(limit=PIPE_BUFFER_BYTES)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
    except (ValueError, OSError):  # a regular file, for instance
        return _FileSource(stdin.fileno())
    return _PipeSource(stream)


class LineReader:
    """Lines from a ChunkSource, without their line break; LINE_TOO_LONG for each line over
    `max_line_bytes`, as soon as it passes the limit (the rest of it is then skipped as it comes)."""

    def __init__(self, source: ChunkSource, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._source = source
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._searched = 0  # the buffer holds no line break before this
        self._skipping = False  # inside a line already answered as too long

    async def readline(self) -> bytes | LineTooLong | None:
        """The next line, LINE_TOO_LONG, or None at end of input (a last line without a line
        break counts as a line)."""
        while True:
            end = self._buffer.find(b"\n", self._searched)
            if end >= 0:
                line = self._take(end)
                if self._skipping:
                    self._skipping = False  # the end of the line already refused
                    continue
                return line if len(line) <= self.max_line_bytes else LINE_TOO_LONG
            if self._skipping:
                self._buffer.clear()
            elif len(self._buffer) > self.max_line_bytes:
                self._buffer.clear()
                self._skipping = True
                return LINE_TOO_LONG
            self._searched = len(self._buffer)
            chunk = await self._source.read(READ_CHUNK)
            if not chunk:
                return self._last_line()
            self._buffer += chunk

    def _take(self, end: int) -> bytes:
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]  # cheap: a bytearray drops its front without copying
        self._searched = 0
        return line

    def _last_line(self) -> bytes | None:
        if self._skipping or not self._buffer:
            return None
        line = bytes(self._buffer)
        self._buffer = bytearray()
        return line


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class _FileWriter:
    """A stdout the event loop cannot watch (a regular file): written at once, all of it."""

    def __init__(self, out: BinaryIO) -> None:
        self._fd = out.fileno()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a write may take less than it is given
            view = view[os.write(self._fd, view) :]

    async def drain(self) -> None:
        return None


def _pipe_like(out: BinaryIO) -> bool:
    """Whether the event loop's pipe transport takes `out`: a pipe, a socket or a character device
    (a terminal). It refuses anything else, a regular file among them (`llama-agent acp > file`),
    with "Pipe transport is only for pipes, sockets and character devices"."""
    try:
        mode = os.fstat(out.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def open_writer(out: BinaryIO) -> _Writer:
    """A writer of `out`: through the event loop when it can watch it (flow control: a client that
    reads slowly holds the daemon's writes back), else directly."""
    if not _pipe_like(out):
        return _FileWriter(out)
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    except (ValueError, OSError):  # not what fstat said: a file swapped in meanwhile, say
        return _FileWriter(out)
    return asyncio.StreamWriter(transport, protocol, None, loop)


class LineWriter:
    """Messages to the client, one JSON text a line: never NaN or Infinity, and an error with
    nothing for the daemon's log only. Each message is written in one piece, so messages sent
    from several tasks never interleave."""

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer
        self._gone = False

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(encode_line(message))
        await self.writable()

    async def writable(self) -> None:
        """Return once what was written is on its way (the client reads it); at once if the
        client has closed its end, which is logged once: nothing more can reach it."""
        try:
            await self._writer.drain()
        except ConnectionError as error:
            if not self._gone:
                log.warning("the client no longer reads what the daemon writes: %s", error)
            self._gone = True


def encode_line(message: dict[str, Any]) -> bytes:
    """`message` as one line of strict JSON (ASCII). An answer that cannot be encoded becomes an
    internal error for its id; anything else that cannot is a bug of ours: TypeError."""
    if isinstance(message.get("error"), dict):
        message = {**message, "error": _client_safe(message["error"])}
    try:
        return _line(message)
    except (TypeError, ValueError, RecursionError):
        if "id" not in message or "method" in message:
            raise TypeError(f"cannot encode a {brief(str(message.get('method')))} message as JSON") from None
        log.exception("cannot encode the answer to request %r as JSON", message["id"])
    error = message.get("error")
    if isinstance(error, dict) and "data" in error:  # an error whose data is not JSON: without it
        with contextlib.suppress(TypeError, ValueError, RecursionError):
            return _line({**message, "error": {key: item for key, item in error.items() if key != "data"}})
    error = {"code": INTERNAL_ERROR, "message": "Internal error: the answer is not JSON"}
    return _line({"jsonrpc": "2.0", "id": message["id"], "error": error})


def _line(message: dict[str, Any]) -> bytes:
    return (encode_json(message) + "\n").encode("ascii")


def _client_safe(error: dict[str, Any]) -> dict[str, Any]:
    code, text = error.get("code"), error.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(text, str):
        return error
    safe = client_safe_error(lsp.ResponseError(code, text, error.get("data")))
    return {"code": safe.code, "message": safe.message, **({} if safe.data is None else {"data": safe.data})}


class Inbox:
    """The client's messages, one a line: `receive` returns only well-formed ones, having
    answered (a request) or logged (anything else) every line that is not."""

    def __init__(self, reader: LineReader, writer: LineWriter, check: MessageCheck | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._check = check

    async def receive(self) -> dict[str, Any] | None:
        """The next well-formed message; None at end of input. Nothing more is read while the
        client leaves what was written to it unread: a client that only sends cannot make the
        daemon hold its answers without bound."""
        while True:
            await self._writer.writable()
            line = await self._reader.readline()
            if line is None:
                return None
            if line is LINE_TOO_LONG:
                limit = self._reader.max_line_bytes
                log.error("dropping a line over %d bytes unread", limit)
                too_long = f"Invalid request: a message (a line) may have at most {limit} bytes"
                await self._refuse(Rejection(INVALID_REQUEST, too_long))
                continue
            assert isinstance(line, bytes)
            message = await self._message(line)
            if message is not None:
                return message

    async def _message(self, line: bytes) -> dict[str, Any] | None:
        text = line.strip(LINE_PADDING)
        if not text:
            return None  # a blank line between messages: not a message, nothing to answer
        try:
            value = parse_json(text)
        except (ValueError, RecursionError) as error:
            await self._refuse(refusal(text, error), "a line that is not JSON")
            return None
        if isinstance(value, list):  # worded for lines; check_message's says frames
            await self._refuse(Rejection(INVALID_REQUEST, NO_BATCHES))
            return None
        rejection = check_message(value)
        if rejection is None and self._check is not None:
            checked = self._check(value)
            rejection, value = (checked, value) if isinstance(checked, Rejection) else (None, checked)
        if rejection is not None:
            await self._refuse(rejection, _kind(value))
            return None
        assert isinstance(value, dict)
        return value

    async def _refuse(self, rejection: Rejection, kind: str = "a message") -> None:
        if not rejection.answer:
            log.warning("ignoring %s: %s", kind, rejection.message)
            return
        log.warning("refusing %s (id %r): %s", kind, rejection.id, rejection.message)
        error = {"code": rejection.code, "message": rejection.message}
        await self._writer.send({"jsonrpc": "2.0", "id": rejection.id, "error": error})


def _kind(value: Any) -> str:
    method = value.get("method") if isinstance(value, dict) else None
    if not isinstance(method, str):
        return "a message"
    request = isinstance(value, dict) and message_id(value.get("id")) is not None
    return f"the {'request' if request else 'notification'} {brief(method)!r}"


class Channel:
    """Messages both ways over stdio lines: the client's well-formed ones in, ours out. It has
    what the ACP SDK asks of a message transport (`send`, `receive`, `close`)."""

    def __init__(self, inbox: Inbox, writer: LineWriter) -> None:
        self._inbox = inbox
        self._writer = writer

    async def receive(self) -> dict[str, Any] | None:
        return await self._inbox.receive()

    async def send(self, message: dict[str, Any]) -> None:
        await self._writer.send(message)

    async def close(self) -> None:
        return None  # stdin and stdout stay open until the process ends


async def open_stdio(stdin: BinaryIO, out: BinaryIO, check: MessageCheck | None = None) -> Channel:
    """The client's messages on `stdin` (each checked by `check` too, if given) and ours to `out`."""
    writer = LineWriter(await open_writer(out))
    reader = LineReader(await open_source(stdin))
    return Channel(Inbox(reader, writer, check), writer)
