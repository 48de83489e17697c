"""A small blocking JSON-RPC client over a WebSocket on `/lsp`, for the load generator.

It drives websockets' sans-I/O protocol over a plain socket, so that under Locust (gevent patches
the socket module) a session is one greenlet and one socket, with no thread of its own. Requests
go one at a time: `call` sends one and reads frames until its answer, answering the server's own
requests with null and skipping notifications (progress).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import select
import socket
import time
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

MAX_FRAME_BYTES = 8 * 1024 * 1024
READ_BYTES = 65536
# WebSocket's close code when the connection ended without a close frame (a killed server).
ABNORMAL = 1006


class Closed(Exception):
    """The connection closed before the answer came; `code` is the close code (1006: no close
    frame, as when the server was killed)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code


class Stale(Closed):
    """The connection had already ended when a request was to be sent: it was not sent."""


class Refused(Exception):
    """The WebSocket upgrade was not accepted (no server, or an HTTP error such as 503)."""


class NoAnswer(Exception):
    """No answer within the request's timeout."""


class RpcSession:
    def __init__(self, url: str, token: str, connect_timeout: float = 10.0) -> None:
        self._ids = itertools.count(1)
        self._pending: list[bytes] = []  # text of frames received but not yet read
        self._fragments: list[bytes] = []
        self.protocol = ClientProtocol(parse_uri(url), max_size=MAX_FRAME_BYTES)
        uri = self.protocol.uri
        try:
            self.sock = socket.create_connection((uri.host, uri.port), timeout=connect_timeout)
        except OSError as error:
            raise Refused(str(error)) from error
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._handshake(token, time.monotonic() + connect_timeout)
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self, token: str, deadline: float) -> None:
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.protocol.send_request(request)
        self._flush()
        while self.protocol.state is State.CONNECTING and self.protocol.handshake_exc is None:
            try:
                self._receive(deadline)
            except (Closed, NoAnswer) as error:
                raise Refused(f"no handshake: {error}") from error
        if self.protocol.state is not State.OPEN:
            raise Refused(f"upgrade refused: {self.protocol.handshake_exc}")
        self._take_frames()

    def close(self) -> None:
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                self._flush()
        except OSError:
            pass
        finally:
            self.sock.close()

    def call(self, method: str, params: Any, timeout: float) -> dict[str, Any]:
        """The whole answer (with `result` or `error`). Raises Closed or NoAnswer."""
        self._catch_up()
        if self.protocol.state is not State.OPEN:  # closing: the server's close frame came
            received = self.protocol.close_rcvd
            raise Stale(received.code if received is not None else ABNORMAL)
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            for answer in self._messages():
                if answer.get("id") == request_id and "method" not in answer:
                    return answer
            self._receive(deadline)

    def _catch_up(self) -> None:
        """Read what already arrived (a close, the end of the stream) before sending: a request
        is never sent on a connection known to be over. Raises Stale if it is."""
        while select.select([self.sock], [], [], 0)[0]:
            try:
                self._receive(time.monotonic() + 1.0)
            except NoAnswer:
                return
            except Closed as closed:
                raise Stale(closed.code) from None

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def send(self, message: dict[str, Any]) -> None:
        if self.protocol.state is not State.OPEN:
            raise Closed(self.protocol.close_code or ABNORMAL)
        self.protocol.send_text(json.dumps(message).encode())
        try:
            self._flush()
        except OSError as error:
            raise Closed(ABNORMAL) from error

    def _messages(self) -> list[dict[str, Any]]:
        """The JSON-RPC messages received so far, the server's requests answered (with null)."""
        texts, self._pending = self._pending, []
        found = []
        for text in texts:
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if "method" in message and "id" in message:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            elif "method" not in message:
                found.append(message)
        return found

    def _receive(self, deadline: float) -> None:
        """Read once from the socket into frames; Closed when the connection has ended."""
        if self.protocol.state is State.CLOSED:
            raise Closed(self.protocol.close_code or ABNORMAL)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoAnswer()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(READ_BYTES)
        except TimeoutError as error:
            raise NoAnswer() from error
        except OSError:
            data = b""  # reset by a killed server: as good as the end of the stream
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self._take_frames()
        with contextlib.suppress(OSError):
            self._flush()  # pongs, the answer to a close
        if (not data or self._closed()) and not self._pending:
            raise Closed(self.protocol.close_code or ABNORMAL)

    def _closed(self) -> bool:
        # A method, not an inline test: the state changes under receive_data, which mypy's narrowing
        # of the property from the check above cannot see.
        return self.protocol.state is State.CLOSED

    def _take_frames(self) -> None:
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):
                continue
            if event.opcode in (Opcode.TEXT, Opcode.CONT):
                self._fragments.append(bytes(event.data))
                if event.fin:
                    self._pending.append(b"".join(self._fragments))
                    self._fragments = []

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)
