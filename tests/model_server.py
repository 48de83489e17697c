"""A real OpenAI-compatible server on loopback, and a proxy in front of it that fails on purpose.

`llama_server` starts llama-cpp-python's own server (`python -m llama_cpp.server`) on 127.0.0.1
with a GGUF; `FaultProxy` forwards to it and can refuse a request field, fail the first requests
with a status, break a stream off, replace what the model wrote, or stall: the failures of real
servers, on demand, with the real server doing everything else. The proxy records what it saw.

`HostileServer` needs no model: it is an OpenAI-compatible server on 127.0.0.1 that misbehaves as
told (a line that never ends, an endless model list, a huge error body, a stream that ignores
max_tokens, malformed events), for the daemon's bounds on what it reads from a server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx

MODEL_ALIAS = "gemma-3-270m"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def llama_server(model: Path, *options: str, log: Path | None = None) -> Iterator[str]:
    """llama_cpp.server on a free loopback port, serving `model` as MODEL_ALIAS with Gemma's
    chat format; yields its base URL (…/v1)."""
    port = free_port()
    command = [
        sys.executable,
        *("-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--chat_format", "gemma"),
        *options,
    ]
    output = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            output.close()  # type: ignore[union-attr]


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}")
        try:
            # Any answer (a 401 too) means it is listening.
            httpx.get(f"{url}/models", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not start within {timeout} s")


@dataclass
class Faults:
    """What the proxy does to the next requests (all off by default)."""

    refuse: tuple[str, ...] = ()  # request fields answered with 400, as a server lacking them does
    fail_first: int = 0  # this many chat requests answered with `fail_status`
    fail_status: int = 503
    cut_after_events: int | None = None  # a stream broken off (with an error event) after this many
    replace_content: str | None = None  # the whole turn, instead of what the model wrote
    stall_seconds: float = 0.0  # before answering a chat request
    pace_seconds: float = 0.0  # before relaying each event: a stream that is surely still running


@dataclass
class Seen:
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat requests, as sent
    statuses: list[int] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    client_gone: int = 0  # streams the client closed before their end


class LoopbackServer:
    """An HTTP server on 127.0.0.1, serving on a thread of its own within a `with` block; its
    `url` is an OpenAI-style base URL (ending in /v1)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


class FaultProxy(LoopbackServer):
    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults or Faults()
        self.seen = Seen()
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                response = httpx.get(proxy.upstream + self.path.removeprefix("/v1"), headers=_auth(self))
                self._send(response.status_code, response.content)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with proxy.lock:
                    proxy.seen.bodies.append(body)
                    proxy.seen.in_flight += 1
                    proxy.seen.most_in_flight = max(proxy.seen.most_in_flight, proxy.seen.in_flight)
                try:
                    proxy.chat(self, body)
                finally:
                    with proxy.lock:
                        proxy.seen.in_flight -= 1

            def _send(self, status: int, content: bytes) -> None:
                with proxy.lock:
                    proxy.seen.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        return Handler

    def chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        faults = self.faults
        time.sleep(faults.stall_seconds)
        refused = [name for name in faults.refuse if name in body]
        with self.lock:
            failing = faults.fail_first > 0
            faults.fail_first -= failing
        if refused or failing:
            status = 400 if refused else faults.fail_status
            message = f"unsupported field: {refused[0]}" if refused else "the server is busy"
            handler._send(status, json.dumps({"error": {"message": message}}).encode())  # type: ignore[attr-defined]
            return
        upstream = self.upstream + "/chat/completions"
        with httpx.stream("POST", upstream, json=body, headers=_auth(handler), timeout=300) as response:
            if response.status_code != 200:
                handler._send(response.status_code, response.read())  # type: ignore[attr-defined]
                return
            self._relay(handler, response.iter_lines())

    def _relay(self, handler: BaseHTTPRequestHandler, lines: Iterator[str]) -> None:
        with self.lock:
            self.seen.statuses.append(200)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        events = 0
        try:
            for line in self._rewritten(lines):
                if not line.startswith("data:"):
                    continue
                if self.faults.cut_after_events is not None and events >= self.faults.cut_after_events:
                    handler.wfile.write(b'data: {"error": {"message": "the model crashed", "code": 500}}\n\n')
                    handler.wfile.flush()
                    break
                time.sleep(self.faults.pace_seconds)
                handler.wfile.write(f"{line}\n\n".encode())
                handler.wfile.flush()
                events += 1
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                self.seen.client_gone += 1
        handler.close_connection = True

    def _rewritten(self, lines: Iterator[str]) -> Iterator[str]:
        if self.faults.replace_content is None:
            yield from lines
            return
        for _ in lines:
            pass  # the model's own turn, discarded
        chunk = {
            "choices": [
                {"index": 0, "delta": {"content": self.faults.replace_content}, "finish_reason": "stop"}
            ]
        }
        yield f"data: {json.dumps(chunk)}"
        yield "data: [DONE]"


def _auth(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    value = handler.headers.get("Authorization")
    return {"Authorization": value} if value else {}


# A hostile server's model, and each answer piece it streams: never the same text twice, so the
# daemon's runaway guard (a repetition) never ends a stream the test means to go on.
HOSTILE_MODEL = "hostile"
HOSTILE_CHUNK = 1024 * 1024  # bytes written at a time of something endless


def piece_text(number: int) -> str:
    return f"{number} "


def piece_event(content: str, finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


@dataclass
class Hostility:
    """What a `HostileServer` does.

    chat: "pieces" (`pieces` answer pieces, then a proper end; None: endless, whatever
    max_tokens says), "unended_line" (an event line that never ends), "error_body" (HTTP
    `error_status` with a body of `error_mib` MiB), "padding" (endless events that carry no token),
    "event" (one answer piece, then `event` as the next event's data).
    models: "list" (one model) or "endless" (a model list that never ends)."""

    chat: str = "pieces"
    models: str = "list"
    pieces: int | None = None
    event: str = ""
    error_status: int = 404
    error_mib: int = 100
    batch: int = 256  # pieces written at a time
    pace_seconds: float = 0.0  # between batches


@dataclass
class HostileSeen:
    max_tokens: list[int] = field(default_factory=list)  # each chat request's
    pieces_sent: int = 0
    bytes_sent: int = 0
    client_gone: int = 0  # responses the client closed before their end


class HostileServer(LoopbackServer):
    def __init__(self, hostility: Hostility | None = None) -> None:
        self.hostility = hostility or Hostility()
        self.seen = HostileSeen()
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hostile._respond(self, hostile._models)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hostile.lock:
                    hostile.seen.max_tokens.append(body.get("max_tokens"))
                hostile._respond(self, hostile._chat)

        return Handler

    def _respond(self, handler: BaseHTTPRequestHandler, body: Callable[[], Iterator[bytes]]) -> None:
        """Status, headers, and `body`'s bytes until it ends or the client goes."""
        status = 200
        if handler.command == "POST" and self.hostility.chat == "error_body":
            status = self.hostility.error_status
        handler.send_response(status)
        streaming = handler.command == "POST" and status == 200
        handler.send_header("Content-Type", "text/event-stream" if streaming else "application/json")
        handler.send_header("Connection", "close")  # the body ends when the connection does
        handler.end_headers()
        try:
            for data in body():
                handler.wfile.write(data)
                handler.wfile.flush()
                with self.lock:
                    self.seen.bytes_sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                self.seen.client_gone += 1
        handler.close_connection = True

    def _models(self) -> Iterator[bytes]:
        if self.hostility.models == "list":
            yield json.dumps({"object": "list", "data": [{"id": HOSTILE_MODEL}]}).encode()
            return
        yield b'{"object": "list", "data": ['
        entry = b'{"id": "m", "object": "model"}, '
        while True:
            yield entry * (HOSTILE_CHUNK // len(entry))

    def _chat(self) -> Iterator[bytes]:
        chat = self.hostility.chat
        if chat == "pieces":
            yield from self._pieces()
        elif chat == "unended_line":
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
            while True:
                yield b"x" * HOSTILE_CHUNK
        elif chat == "error_body":
            yield b'{"error": {"message": "'
            for _ in range(self.hostility.error_mib):
                yield b"y" * HOSTILE_CHUNK
            yield b'"}}'
        elif chat == "padding":
            while True:
                yield b'data: {"choices": []}\n\n: keep-alive\n\n' * 4096
        elif chat == "event":
            yield piece_event('{"answer": "')
            yield f"data: {self.hostility.event}\n\n".encode()
            for _ in range(600):  # nothing more for a minute: the daemon must end the turn on the event
                time.sleep(0.1)
                yield b": still here\n\n"
        else:
            raise ValueError(f"no such hostility: {chat}")

    def _pieces(self) -> Iterator[bytes]:
        """An answer turn, `{"answer": "0 1 2 …"}`, a piece an event, in batches."""
        hostility = self.hostility
        yield piece_event('{"answer": "')
        number = 0
        while hostility.pieces is None or number < hostility.pieces:
            end = number + hostility.batch
            if hostility.pieces is not None:
                end = min(end, hostility.pieces)
            yield b"".join(piece_event(piece_text(n)) for n in range(number, end))
            with self.lock:
                self.seen.pieces_sent = end
            number = end
            time.sleep(hostility.pace_seconds)
        yield piece_event('"}', finish="stop")
        yield b"data: [DONE]\n\n"
