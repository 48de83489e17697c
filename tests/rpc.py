"""A strict JSON-RPC client for the daemon over stdio, for end-to-end tests.

Strict on purpose: every byte the daemon writes to stdout must belong to a
well-formed `Content-Length` frame holding a JSON-RPC 2.0 message. Anything else
is recorded in `violations` and fails the test that checks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 120.0

# Starts a daemon and answers its session: the e2e fixture `start_daemon` (tests/e2e/conftest.py).
StartDaemon = Callable[..., Awaitable["DaemonSession"]]
# Answers a request from the daemon: gets its params, returns the result (raises RpcError to
# answer with an error).
ServerRequestHandler = Callable[[Any], Awaitable[Any]]


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class DaemonSession:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.notifications: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.parse_errors: list[dict[str, Any]] = []  # answers to frames that were not JSON
        self.stderr = bytearray()
        self.initialize_result: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[Any]] = {}
        self._notified = asyncio.Condition()
        self._request_handlers: dict[str, ServerRequestHandler] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read_stdout())
        self._stderr_reader = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(
        cls, args: Sequence[str], env: dict[str, str] | None = None, command: Sequence[str] | None = None
    ) -> DaemonSession:
        """Start `llama-agent serve ARGS` (or `command` + ARGS) with pipes for all three streams."""
        program = list(command or [str(Path(sys.executable).with_name("llama-agent")), "serve"])
        process = await asyncio.create_subprocess_exec(
            *program,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            limit=64 * 1024 * 1024,
        )
        return cls(process)

    @classmethod
    async def open(
        cls,
        args: Sequence[str],
        *,
        initialize: bool = True,
        init_params: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> DaemonSession:
        """A started daemon, past `initialize`/`initialized` unless `initialize` is false."""
        session = await cls.start(args, env=env, command=command)
        if initialize:
            try:
                await session.initialize(**(init_params or {}))
            except BaseException:
                await session.kill()
                raise
        return session

    # -- sending ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send_frame(self, body: bytes) -> None:
        """`body` as it is (JSON or not) in a correctly framed message."""
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def expect_response(self, request_id: int | str) -> asyncio.Future[Any]:
        """A future for the answer to a request sent by hand (`send_raw`, `send_frame`) with this id."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return future

    def request_future(self, method: str, params: Any = None) -> tuple[int, asyncio.Future[Any]]:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return request_id, future

    async def request(self, method: str, params: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        _, future = self.request_future(method, params)
        return await asyncio.wait_for(future, timeout)

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def cancel(self, request_id: int) -> None:
        self.notify("$/cancelRequest", {"id": request_id})

    def on_server_request(self, method: str, handler: ServerRequestHandler) -> None:
        """Answer the daemon's `method` requests with what `handler(params)` returns, whenever it
        returns: other messages are read meanwhile. Without a handler a request is answered null."""
        self._request_handlers[method] = handler

    def server_requests(self, method: str) -> list[dict[str, Any]]:
        """The `method` requests the daemon has sent so far, in order."""
        return [m for m in self.notifications if m["method"] == method and "id" in m]

    async def _answer(self, message: dict[str, Any], handler: ServerRequestHandler) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
        try:
            reply["result"] = await handler(message.get("params"))
        except RpcError as error:
            reply["error"] = {"code": error.code, "message": error.message}
        if self.process.returncode is None:
            self.send(reply)

    # -- lifecycle ----------------------------------------------------------------------

    async def initialize(self, **params: Any) -> Any:
        result = await self.request("initialize", {"processId": os.getpid(), "capabilities": {}, **params})
        self.initialize_result = result
        self.notify("initialized", {})
        return result

    async def shutdown_and_exit(self, timeout: float = 30.0) -> int:
        await self.request("shutdown", timeout=timeout)
        self.notify("exit")
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(self._reader, self._stderr_reader, return_exceptions=True), 5
            )
        return code

    def stop_reading_stderr(self) -> None:
        """Leave the daemon's stderr unread from now on, as some clients do: the pipe fills up."""
        self._stderr_reader.cancel()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        self._stderr_reader.cancel()
        for answering in self._answering:
            answering.cancel()

    # -- receiving ----------------------------------------------------------------------

    async def wait_for_notification(
        self,
        method: str,
        timeout: float = DEFAULT_TIMEOUT,
        after: int = 0,
        where: Callable[[Any], bool] = lambda params: True,
    ) -> dict[str, Any]:
        """The first `method` notification with index >= `after` whose params satisfy `where`."""

        def find() -> dict[str, Any] | None:
            for message in self.notifications[after:]:
                if message["method"] == method and where(message.get("params")):
                    return message
            return None

        async with self._notified:
            await asyncio.wait_for(self._notified.wait_for(lambda: find() is not None), timeout)
        found = find()
        assert found is not None
        return found

    def progress(self, token: str | int) -> list[dict[str, Any]]:
        """The `$/progress` values sent so far on `token`, in order."""
        return [
            message["params"]["value"]
            for message in self.notifications
            if message["method"] == "$/progress" and message["params"]["token"] == token
        ]

    async def echoes(self, timeout: float = 30.0) -> bool:
        """Whether the daemon still serves: the bundled `echo` answers a call."""
        result = await self.request("tools/invoke", {"name": "echo", "arguments": {"value": "ok"}}, timeout)
        return bool(result["content"][0]["text"] == "ok")

    def rss_bytes(self) -> int:
        """The daemon process's resident memory (its worker processes not included)."""
        return process_rss_bytes(self.process.pid)

    def worker_pids(self) -> list[int]:
        """The daemon's child processes: the workers that run tool calls."""
        return child_pids(self.process.pid)

    def workers_rss_bytes(self) -> int:
        return sum(process_rss_bytes(pid) for pid in self.worker_pids())

    async def wait_until(self, condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until `condition()` holds, checked after every message from the daemon."""
        async with self._notified:
            await asyncio.wait_for(self._notified.wait_for(condition), timeout)

    def record_messages(self) -> list[dict[str, Any]]:
        """From now on, also keep every message the daemon sends, in order, in the list returned."""
        received: list[dict[str, Any]] = []
        dispatch = self._dispatch

        async def record(message: dict[str, Any]) -> None:
            received.append(message)
            await dispatch(message)

        self._dispatch = record  # type: ignore[method-assign]
        return received

    async def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = await self._read_headers(stream)
            if length is None:
                return
            body = await stream.readexactly(length)
            try:
                message = json.loads(body)
            except ValueError:
                self.violations.append(f"frame body is not JSON: {body[:200]!r}")
                continue
            await self._dispatch(message)

    async def _read_headers(self, stream: asyncio.StreamReader) -> int | None:
        length: int | None = None
        while True:
            line = await stream.readline()
            if not line:
                return None
            if line == b"\r\n":
                if length is None:
                    self.violations.append("frame without Content-Length")
                    continue
                return length
            name, sep, value = line.decode("ascii", errors="replace").partition(":")
            if not sep or not line.endswith(b"\r\n"):
                self.violations.append(f"non-protocol output on stdout: {line[:200]!r}")
            elif name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() != "content-type":
                self.violations.append(f"unexpected header: {line[:200]!r}")

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("jsonrpc") != "2.0":
            self.violations.append(f"not JSON-RPC 2.0: {message!r}")
        if "method" in message and "id" in message:
            # A request from the server (e.g. window/workDoneProgress/create): kept among the
            # notifications, and answered by its handler, or with null.
            self.notifications.append(message)
            handler = self._request_handlers.get(message["method"])
            if handler is None:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            else:
                answering = asyncio.create_task(self._answer(message, handler))
                self._answering.add(answering)
                answering.add_done_callback(self._answering.discard)
        elif "method" in message:
            self.notifications.append(message)
        elif message.get("id") is None and "error" in message:
            self.parse_errors.append(message["error"])
        else:
            future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is None or future.done():
                self.violations.append(f"response to unknown id: {message!r}")
            elif "error" in message:
                error = message["error"]
                future.set_exception(RpcError(error["code"], error["message"], error.get("data")))
            else:
                future.set_result(message.get("result"))
        async with self._notified:
            self._notified.notify_all()

    async def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            self.stderr.extend(chunk)


def process_rss_bytes(pid: int) -> int:
    """Resident memory of one process; 0 if it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (from /proc, so no extra dependency)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name, in parentheses, may contain spaces: fields start after the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return children
