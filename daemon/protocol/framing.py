"""Reads Content-Length frames from the client, surviving whatever arrives.

pygls' own reader stops understanding the stream after one bad header and hands
every parse error to a logger. This one resynchronises on the next
`Content-Length` header, skips oversized frames without holding them in memory,
and answers a body that is not JSON with JSON-RPC's parse error (-32700).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Awaitable
from typing import Any, BinaryIO, Protocol

from pygls.io_ import StdinAsyncReader
from pygls.protocol import JsonRPCProtocol

log = logging.getLogger(__name__)

# Anywhere in a line, so a header glued to leftover bytes of a bad frame still counts.
CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d+)[ \t]*\r?\n$", re.IGNORECASE)
MAX_FRAME_BYTES = 64 * 1024 * 1024
DISCARD_CHUNK = 1024 * 1024
PARSE_ERROR = -32700


class FrameReader(Protocol):
    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...


class _PipeReader:
    """stdin through the event loop itself: no thread hop per header line and body."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream

    async def readline(self) -> bytes:
        return await self._stream.readline()

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self._stream.readexactly(n)
        except asyncio.IncompleteReadError as error:
            return error.partial


async def open_reader(stdin: BinaryIO, fallback: StdinAsyncReader) -> FrameReader:
    """A non-blocking reader on `stdin` if it is a pipe or terminal, else a thread-backed one."""
    stream = asyncio.StreamReader(limit=MAX_FRAME_BYTES)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), stdin)
    except (ValueError, OSError):  # a regular file, for instance
        return fallback
    return _PipeReader(stream)


async def serve_frames(
    reader: FrameReader,
    protocol: JsonRPCProtocol,
    stop: threading.Event,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> None:
    """Feed each frame to `protocol` until end of input or `stop`."""
    while not stop.is_set():
        length = await _read_headers(reader)
        if length is None:
            return  # the client closed its end
        if length > max_frame_bytes:
            log.error("dropping a %d-byte message: the limit is %d bytes", length, max_frame_bytes)
            if not await _discard(reader, length):
                return
            continue
        body = await reader.readexactly(length)
        if len(body) < length:
            return
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
        except ValueError as error:
            log.error("dropping a message that is not JSON: %s", error)
            _send_parse_error(protocol, str(error))
            continue
        try:
            protocol.handle_message(message)
        except Exception:  # a bug in a handler must not end the session
            log.exception("failed to handle a message")


async def _read_headers(reader: FrameReader) -> int | None:
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


async def _discard(reader: FrameReader, length: int) -> bool:
    while length > 0:
        chunk = await reader.readexactly(min(length, DISCARD_CHUNK))
        if not chunk:
            return False
        length -= len(chunk)
    return True


def _send_parse_error(protocol: JsonRPCProtocol, detail: str) -> None:
    error: dict[str, Any] = {"code": PARSE_ERROR, "message": f"Parse error: {detail}"}
    protocol._send_data({"jsonrpc": "2.0", "id": None, "error": error})
