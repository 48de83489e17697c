"""Nothing a client writes on a line ends or wedges the line-framed faces (`llama-agent acp` and
`llama-agent mcp`), and all they write is strict JSON, one message a line.

Each test runs one face on the bundled tools and writes raw lines to its stdin. After every case
it checks that the face still serves (ACP: `session/new`; MCP: `tools/call` of echo) and that it
answered the case as the LSP face would (or not at all, for what is not a request). Throughout,
every line the face writes must be strict JSON (no NaN or Infinity), no error may be an internal
one or carry a traceback; at the end the face's memory has grown by less than RSS_CEILING.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)

from tests.clients import LLAMA_AGENT

MIB = 1024 * 1024
# What the faces may grow by over a whole test, 200 MB lines included.
RSS_CEILING = 64 * MIB
# The faces' longest line (llama_agent.faces.wire.lines.MAX_LINE_BYTES).
MAX_LINE_BYTES = 16 * MIB
FACES = ["acp", "mcp"]
MCP_INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "fuzz", "version": "1"},
}


class NotJson(ValueError):
    pass


def strict_json(line: bytes) -> Any:
    """`line` as JSON, refusing what Python's json module reads and JSON lacks (NaN, Infinity)."""

    def refuse(token: str) -> Any:
        raise NotJson(f"{token} in the output")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise NotJson(f"{text} in the output")
        return value

    return json.loads(line.decode("utf-8"), parse_constant=refuse, parse_float=finite)


@dataclass
class LineFace:
    """One face as a subprocess, and everything it has written."""

    name: str
    process: asyncio.subprocess.Process
    workspace: Path
    received: list[dict[str, Any]] = field(default_factory=list)
    null_id_errors: list[dict[str, Any]] = field(default_factory=list)
    # Answers to ids the test did not wait for (the hypothesis test's requests).
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _pending: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                message = strict_json(line)
            except (ValueError, UnicodeDecodeError) as error:
                self.violations.append(f"{error}: {line[:200]!r}")
                continue
            if not isinstance(message, dict) or not line.endswith(b"\n"):
                self.violations.append(f"not one message a line: {line[:200]!r}")
                continue
            self.received.append(message)
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message:
            return  # a notification (or a request) of the face's own
        if message.get("id") is None:
            self.null_id_errors.append(message.get("error", {}))
            return
        future = self._pending.pop(message["id"], None)
        if future is None:
            self.unexpected.append(message)
        elif not future.done():
            future.set_result(message)

    async def output_ended(self) -> None:
        assert self._reader is not None
        await asyncio.wait_for(self._reader, 30)

    def expect(self, request_id: Any) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return future

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def request(
        self, method: str, params: Any, timeout: float = 60.0, end: bytes = b"\n"
    ) -> dict[str, Any]:
        """The face's answer (result or error) to a request, sent as one line ending in `end`."""
        request_id = f"alive-{next(self._ids)}"  # longer than the fuzzed ids: never one of them
        answer = self.expect(request_id)
        line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        await self.send(line.encode() + end)
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.process.wait())
        try:
            await asyncio.wait([answer, exited], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        assert answer.done(), f"no answer to {method} (exit code {self.process.returncode})"
        return answer.result()

    async def serves(self, end: bytes = b"\n") -> bool:
        """Whether the face answers a real request: ACP `session/new`, MCP an echo."""
        if self.name == "acp":
            answer = await self.request(
                "session/new", {"cwd": str(self.workspace), "mcpServers": []}, end=end
            )
            return isinstance(answer.get("result", {}).get("sessionId"), str)
        value = f"alive {next(self._ids)}"
        answer = await self.request("tools/call", {"name": "echo", "arguments": {"value": value}}, end=end)
        return bool(answer.get("result", {}).get("content") == [{"type": "text", "text": value}])

    async def null_id_error(self, before: int, timeout: float = 60.0) -> dict[str, Any]:
        """The first error answered with id null after the first `before`."""
        async with asyncio.timeout(timeout):
            while len(self.null_id_errors) <= before:
                assert self.process.returncode is None, "the face exited"
                await asyncio.sleep(0.01)
        return self.null_id_errors[before]

    async def settled_rss(self, timeout: float = 30.0) -> int:
        """The face's memory once it has stopped growing (its tools load in the background)."""
        previous = self.rss()
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.5)
                now = self.rss()
                if abs(now - previous) < MIB:
                    return now
                previous = now

    def rss(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * 1024

    def assert_clean(self) -> None:
        """Strict JSON only, no internal error and nothing for the face's log in any error."""
        assert self.violations == []
        for message in self.received:
            error = message.get("error")
            if error is not None:
                assert error.get("code") != INTERNAL_ERROR, message
                assert "Traceback" not in json.dumps(error), message
                assert "site-packages" not in json.dumps(error), message


@contextlib.asynccontextmanager
async def line_face(
    name: str, tmp_path: Path, tools: Path, cache_dir: Path, config_dir: Path
) -> AsyncIterator[LineFace]:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        LLAMA_AGENT,
        name,
        "--tools-dir",
        str(tools),
        "--cache-dir",
        str(cache_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "LLAMA_AGENT_CONFIG_DIR": str(config_dir)},
        limit=64 * MIB,
    )
    face = LineFace(name, process, workspace)
    face.start_reading()
    try:
        if name == "acp":
            started = await face.request("initialize", {"protocolVersion": 1})
        else:
            started = await face.request("initialize", MCP_INITIALIZE)
            await face.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        assert "result" in started, started
        assert await face.serves()
        yield face
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.fixture(params=FACES)
async def face(
    request: pytest.FixtureRequest, tmp_path: Path, bundled_tools: Path, cache_dir: Path, config_dir: Path
) -> AsyncIterator[LineFace]:
    async with line_face(request.param, tmp_path, bundled_tools, cache_dir, config_dir) as started:
        yield started


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Lines without a usable id, answered with id null. (line, code)
NULL_ID_ANSWERS: list[tuple[bytes, int]] = [
    (b"1", INVALID_REQUEST),
    (b"[]", INVALID_REQUEST),
    (b'"x"', INVALID_REQUEST),
    (b"null", INVALID_REQUEST),
    (b"true", INVALID_REQUEST),
    (b"{}", INVALID_REQUEST),
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST),
    (b'[{"jsonrpc":"2.0","method":"x"}, 1]', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":Infinity,"method":"ping"}', PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":-Infinity,"method":"ping"}', PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}', PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":{},"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":[1],"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST),
    (b"[" * 100_000, PARSE_ERROR),
    (nested(1000).encode(), PARSE_ERROR),
    (b'{"a":' * 3000 + b"1" + b"}" * 3000, PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":"n","method":"x","params":{"n":' + b"9" * 5000 + b"}}", PARSE_ERROR),
    (b"{not json", PARSE_ERROR),
    (b"\xff\xfe{}", PARSE_ERROR),
    (b'{"a":"\xc3"}', PARSE_ERROR),
    ("{}".encode("utf-16"), PARSE_ERROR),
    (b"\x00\x01\x02", PARSE_ERROR),
    (b"\x1b[2J", PARSE_ERROR),
]
# Requests answered with their own id ({id}), whatever the method ({method}). (line, code)
ID_ANSWERS: list[tuple[str, int]] = [
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":NaN}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":Infinity}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":-Infinity}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":1e400}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":"a\\ud800"}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":"\\udc00b"}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","extra":NaN}', INVALID_REQUEST),
    ('{"jsonrpc":"1.0","id":{id},"method":"{method}"}', INVALID_REQUEST),
    ('{"id":{id},"method":"{method}"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"params":{}}', INVALID_REQUEST),  # no method
    ('{"jsonrpc":"2.0","id":{id}}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":5}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":null}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":5}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":"x"}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{"x":' + nested(200) + "}}", INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":"no/such/method"}', METHOD_NOT_FOUND),
    ('{"jsonrpc":"2.0","id":{id},"method":"server/discover"}', METHOD_NOT_FOUND),
    ('{"jsonrpc":"2.0","id":{id},"method":""}', METHOD_NOT_FOUND),
]
# Ids of every usable kind: each must come back as it went.
REQUEST_IDS: list[Callable[[int], int | str]] = [
    lambda n: 1000 + n,
    lambda n: f"s{n}",
    lambda n: -(10**15) - n,
    lambda n: f"\u00e9\u2603{n}",
]
# Lines that are no request: nothing is answered (a blank line, a response to no request, a
# notification, malformed or unknown).
UNANSWERED: list[bytes] = [
    b"",
    b"\r",
    b"   ",
    b" \t \r",
    b'{"jsonrpc":"2.0","id":424242,"result":{}}',
    b'{"jsonrpc":"2.0","id":"r1","error":{"code":1,"message":"x"}}',
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}',
    b'{"jsonrpc":"2.0","id":7,"result":Infinity}',
    b'{"jsonrpc":"2.0","id":{},"result":1}',
    b'{"jsonrpc":"2.0","method":"no/such/notification"}',
    b'{"jsonrpc":"2.0","method":"x","params":{"v":NaN}}',
    b'{"jsonrpc":"2.0","method":"x","params":5}',
    b'{"jsonrpc":"2.0","method":"exit"}',
    b'{"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"nope"}}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}',
]


async def test_bad_lines_are_answered_as_on_the_lsp_face_and_only_end_of_input_ends_it(
    face: LineFace,
) -> None:
    start = await face.settled_rss()
    for line, code in NULL_ID_ANSWERS:
        before = len(face.null_id_errors)
        await face.send(line + b"\n")
        assert (await face.null_id_error(before))["code"] == code, line[:80]
        assert await face.serves(), line[:80]
        assert len(face.null_id_errors) == before + 1, line[:80]  # one answer, no more
    method = "session/new" if face.name == "acp" else "tools/list"
    for n, (template, code) in enumerate(ID_ANSWERS):
        request_id = REQUEST_IDS[n % len(REQUEST_IDS)](n)
        body = template.replace("{id}", json.dumps(request_id)).replace("{method}", method)
        answer = face.expect(request_id)
        await face.send(body.encode() + b"\n")
        error = (await asyncio.wait_for(answer, 60))["error"]
        assert error["code"] == code, (body[:80], error)
        assert await face.serves(), body[:80]
    for line in UNANSWERED:
        await face.send(line + b"\n")
        assert await face.serves(), line
    assert await face.serves(end=b"\r\n")  # CRLF ends a line too
    face.assert_clean()
    assert face.rss() - start < RSS_CEILING

    # Only the end of input ends the face, and with 0 (a last line without its end is read too).
    before = len(face.null_id_errors)
    await face.send(b'{"jsonrpc":"2.0","id":"last","method":"x"')
    assert face.process.stdin is not None
    face.process.stdin.close()
    assert await asyncio.wait_for(face.process.wait(), 30) == 0
    await face.output_ended()
    assert [error["code"] for error in face.null_id_errors[before:]] == [PARSE_ERROR]
    face.assert_clean()


async def test_long_lines_are_refused_unread_and_memory_stays_flat(face: LineFace) -> None:
    start = await face.settled_rss()

    # Just under the limit: read and answered, not refused.
    padding = " " * (MAX_LINE_BYTES - 200)
    answer = face.expect("at-limit")
    line = '{"jsonrpc":"2.0","id":"at-limit","method":"no/such/method","params":{}' + padding + "}"
    await face.send(line.encode() + b"\n")
    assert (await asyncio.wait_for(answer, 60))["error"]["code"] == METHOD_NOT_FOUND
    assert await face.serves()

    # 200 MB: answered with id null (it is never read far enough to find one), then skipped.
    before = len(face.null_id_errors)
    await face.send(b'{"jsonrpc":"2.0","id":"big","method":"tools/list","params":{"x":"')
    for _ in range(200):
        await face.send(b"a" * MIB)
    await face.send(b'"}}\n')
    error = await face.null_id_error(before)
    assert error["code"] == INVALID_REQUEST and str(MAX_LINE_BYTES) in error["message"]
    assert await face.serves()

    # A line that does not end: answered as soon as it passes the limit, and never held.
    for _ in range(MAX_LINE_BYTES // MIB + 1):
        await face.send(b"[" * MIB)
    assert (await face.null_id_error(before + 1))["code"] == INVALID_REQUEST  # the line still open
    for _ in range(64):
        await face.send(b"[" * MIB)
    await asyncio.sleep(0.2)
    open_line_growth = face.rss() - start
    await face.send(b"\n")
    assert await face.serves()
    assert len(face.null_id_errors) == before + 2

    if face.name == "acp":  # 5,000 sessions: the oldest idle ones are let go
        for _ in range(5000):
            assert await face.serves()
    face.assert_clean()
    assert open_line_growth < RSS_CEILING, open_line_growth
    assert face.rss() - start < RSS_CEILING, face.rss() - start


# -- hypothesis: lines of any shape --------------------------------------------------------------

RAW_TOKENS = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', "1" + "0" * 400, nested(300)]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
METHODS = st.sampled_from(
    ["initialize", "session/new", "session/prompt", "session/cancel", "tools/list", "tools/call", "ping", "x"]
) | st.text(max_size=12)
IDS = (
    st.integers(-(2**63), 2**63)
    | st.text(max_size=6)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A JSON-RPC message with any of its members missing, of a wrong type, or not JSON at all."""
    members: dict[str, str] = {}
    if draw(st.booleans()):
        members["jsonrpc"] = json.dumps(draw(st.sampled_from(["2.0", "2.0", "1.0", 2])))
    if draw(st.integers(0, 3)):
        members["method"] = json.dumps(draw(METHODS))
    if draw(st.booleans()):
        members["id"] = draw(RAW_TOKENS) if draw(st.integers(0, 9)) == 0 else json.dumps(draw(IDS))
    if draw(st.booleans()):
        members["params"] = draw(RAW_TOKENS) if draw(st.integers(0, 5)) == 0 else json.dumps(draw(VALUES))
    if draw(st.integers(0, 5)) == 0:
        members[draw(st.sampled_from(["result", "error"]))] = json.dumps(draw(VALUES))
    body = "{" + ",".join(f'"{key}":{value}' for key, value in members.items()) + "}"
    return body.encode()


LINES = messages() | st.binary(max_size=120).map(lambda data: data.replace(b"\n", b""))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=LINES)
async def test_any_line_leaves_the_face_serving(face: LineFace, line: bytes) -> None:
    await face.send(line + b"\n")
    assert await face.serves(), line[:200]
    face.assert_clean()
