"""One minimal synchronous JSON-RPC client for both servers of the invoke benchmark, so that their
round trips compare servers and not clients: the MCP peer's stdio transport (one JSON message a
line) and the daemon's (`Content-Length` frames) differ only in how a message is framed; writing,
reading, matching the answer and the clock are the same code."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Sequence
from typing import IO, Any, Literal

Framing = Literal["lines", "content-length"]
# Bounds what a misbehaving server can make the client read.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class RemoteError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


def encode(message: dict[str, Any], framing: Framing) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if framing == "lines":
        return body + b"\n"
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_message(reader: IO[bytes], framing: Framing) -> dict[str, Any]:
    """The next message on `reader`; EOFError at the end of the stream."""
    if framing == "lines":
        body = reader.readline(MAX_MESSAGE_BYTES)
        if not body.endswith(b"\n"):
            raise EOFError("the server closed its output (or sent an unbounded line)")
    else:
        length = _content_length(reader)
        body = reader.read(length)
        if len(body) != length:
            raise EOFError("the server closed its output within a message")
    message: dict[str, Any] = json.loads(body)
    return message


def _content_length(reader: IO[bytes]) -> int:
    length = -1
    while (header := reader.readline(1024)) not in (b"\r\n", b"\n"):
        if not header.endswith(b"\n"):
            raise EOFError("the server closed its output")
        name, _, value = header.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if not 0 <= length <= MAX_MESSAGE_BYTES:
        raise ValueError(f"bad Content-Length: {length}")
    return length


class LineClient:
    """Requests one at a time: write the request, read until its answer. Notifications from the
    server are skipped, requests from it answered with null."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes], framing: Framing) -> None:
        self._reader = reader
        self._writer = writer
        self._framing = framing
        self._ids = itertools.count(1)

    def request(self, method: str, params: Any = None) -> Any:
        request_id = next(self._ids)
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            message = read_message(self._reader, self._framing)
            if "method" in message:
                if "id" in message:  # the server asks something: nothing the benchmark needs
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            if message.get("id") != request_id:
                raise ValueError(f"an answer to request {message.get('id')}, not {request_id}")
            if "error" in message:
                raise RemoteError(message["error"])
            return message.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(encode(message, self._framing))
        self._writer.flush()


class ServerProcess:
    """A server started with pipes for stdin and stdout (stderr dropped), talked to by a
    `LineClient`."""

    def __init__(self, command: Sequence[str], framing: Framing, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.client = LineClient(self.process.stdout, self.process.stdin, framing)

    def close(self, timeout: float = 30.0) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
