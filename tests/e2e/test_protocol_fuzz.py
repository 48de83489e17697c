"""Nothing a client sends ends or wedges the daemon, and every protocol corner gets its answer.

Each test runs one daemon. After every message it checks that the daemon still serves (an echo
through `tools/invoke`), and at the end that everything it wrote was clean: well-formed frames
(the fixture checks that), no NaN or Infinity, no internal errors, no tracebacks or paths of the
daemon's own code in any error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from llama_agent.common.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
)
from llama_agent.config import REPO_ROOT

from tests.rpc import DaemonSession, RpcError, StartDaemon

# What a bad request may be answered with (the daemon is initialized in these tests).
EXPECTED_ERRORS = {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS}
MIB = 1024 * 1024
DAEMON_SOURCES = [str(REPO_ROOT / "daemon"), *{sysconfig.get_paths()[key] for key in ("stdlib", "purelib")}]


@dataclass
class Client:
    """A daemon session, and every message it has sent since the test began."""

    session: DaemonSession
    received: list[dict[str, Any]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def responsive(self, attempts: int = 3, timeout: float = 20.0) -> bool:
        """Whether the daemon answers an echo. A frame with a wrong Content-Length may swallow the
        next request, so after a silence a fresh one (with a fresh id) is sent."""
        exited = asyncio.ensure_future(self.session.process.wait())
        try:
            for attempt in range(attempts):
                value = f"alive {attempt}"
                _, answer = self.session.request_future(
                    "tools/invoke", {"name": "echo", "arguments": {"value": value}}
                )
                # asyncio.wait, not wait_for: a late answer must find its future still pending.
                await asyncio.wait({answer, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if answer.done():
                    return bool(answer.result()["content"][0]["text"] == value)
                if exited.done():
                    return False
            return False
        finally:
            exited.cancel()

    async def null_id_error(self, before: int, timeout: float = 30.0) -> dict[str, Any]:
        """The first error answered with id null after the first `before` ones."""
        errors = self.session.parse_errors
        await self.session.wait_until(lambda: len(errors) > before, timeout)
        return errors[before]

    def assert_clean(self) -> None:
        """No NaN or Infinity, no internal error, and nothing for the daemon's log in any error."""
        for message in self.received:
            assert not _non_finite(message), message
            error = message.get("error")
            if error is None:
                continue
            assert error["code"] != INTERNAL_ERROR, message
            text = json.dumps(error)
            assert "Traceback" not in text, message
            assert "traceback" not in (error.get("data") or {}), message
            for root in DAEMON_SOURCES:
                assert root not in text, message


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_non_finite(item) for item in value)
    return False


@pytest.fixture
async def client(start_daemon: StartDaemon, tools_dir: Path) -> Client:
    session = await start_daemon("--tools-dir", tools_dir)
    return Client(session, session.record_messages())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- (a) the known killers and corners ----------------------------------------------------------

# Notifications: none of them may end the daemon, and none is answered.
MALFORMED_NOTIFICATIONS = [
    '{"jsonrpc":"2.0","method":"$/cancelRequest"}',  # the 44-byte killer
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":{}}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":[1]}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":null}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":true}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":424242}}',  # nothing to cancel
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":[]}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":"x"}',
    '{"jsonrpc":"2.0","method":"initialized"}',
    '{"jsonrpc":"2.0","method":"initialized","params":"x"}',
    '{"jsonrpc":"2.0","method":"initialized","params":[1,2]}',
    '{"jsonrpc":"2.0","method":"exit","params":{"code":0}}',
    '{"jsonrpc":"2.0","method":"exit","params":[0]}',
    '{"jsonrpc":"2.0","method":"exit","params":"x"}',
    '{"jsonrpc":"1.0","method":"exit"}',
    '{"method":"exit"}',
    '{"jsonrpc":"2.0","method":"shutdown"}',  # a request without an id: it must not shut down
    '{"jsonrpc":"2.0","method":"initialize"}',
    '{"jsonrpc":"2.0","method":"$/setTrace"}',
    '{"jsonrpc":"2.0","method":"$/setTrace","params":{}}',
    '{"jsonrpc":"2.0","method":"$/setTrace","params":{"value":"loud"}}',
    '{"jsonrpc":"2.0","method":"workspace/didChangeConfiguration"}',
    '{"jsonrpc":"2.0","method":"workspace/didChangeConfiguration","params":5}',
    '{"jsonrpc":"2.0","method":"workspace/didChangeWorkspaceFolders","params":{"event":{"added":[{"uri":5}]}}}',
    '{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":null}}',
    '{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":"file:///nope",'
    '"version":1},"contentChanges":[{"text":"x"}]}}',
    '{"jsonrpc":"2.0","method":"window/workDoneProgress/cancel","params":{"token":{}}}',
    '{"jsonrpc":"2.0","method":"$/progress","params":{"token":1,"value":{}}}',
    '{"jsonrpc":"2.0","method":"$/unknown"}',
    '{"jsonrpc":"2.0","method":"tools/whatever","params":{"x":1}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1,"deep":' + nested(200) + "}}",
    '{"jsonrpc":"2.0","method":"exit","deep":' + nested(500) + "}",
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":NaN}}',  # not JSON: a log line too
    '{"jsonrpc":"2.0","method":"initialized","params":{"x":Infinity}}',
    '{"jsonrpc":"2.0","id":"r0","result":[1e400]}',
    # Responses to requests the daemon never sent, some malformed: dropped.
    '{"jsonrpc":"2.0","id":"r1","result":null}',
    '{"jsonrpc":"2.0","id":"r2","error":{"code":"x"}}',
    '{"jsonrpc":"2.0","id":{},"result":1}',
    '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}',
    '{"jsonrpc":"2.0","id":"r3","result":1,"error":{"code":1,"message":"x"}}',
]


async def test_malformed_notifications_are_logged_and_the_daemon_serves_on(client: Client) -> None:
    for body in MALFORMED_NOTIFICATIONS:
        client.session.send_frame(body.encode())
        assert await client.responsive(), body
    assert client.session.parse_errors == []  # and no answer with an id (the fixture checks that)
    client.assert_clean()


# Requests answered with their own id: (body with {id}, code).
MALFORMED_REQUESTS = [
    ('{"jsonrpc":"1.0","id":{id},"method":"tools/list"}', INVALID_REQUEST),
    ('{"id":{id},"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":2.0,"id":{id},"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":5}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":null}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":["tools/list"]}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id}}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"params":{}}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":5}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":"x"}', INVALID_PARAMS),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"tools/invoke","params":{"name":"echo","arguments":{"value":'
        + nested(200)
        + "}}}",
        INVALID_REQUEST,
    ),
    ('{"jsonrpc":"2.0","id":{id},"method":"tools/explode"}', METHOD_NOT_FOUND),
    ('{"jsonrpc":"2.0","id":{id},"method":"$/unknown"}', METHOD_NOT_FOUND),
    ('{"jsonrpc":"2.0","id":{id},"method":"initialized","params":{}}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":"exit"}', INVALID_REQUEST),  # and it does not exit
    ('{"jsonrpc":"2.0","id":{id},"method":"$/cancelRequest","params":{"id":1}}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{"capabilities":5}}', INVALID_PARAMS),
    ('{"jsonrpc":"2.0","id":{id},"method":"initialize","params":"x"}', INVALID_PARAMS),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"workspace/executeCommand","params":{"command":"nope"}}',
        INVALID_PARAMS,
    ),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"tools/invoke","params":{"name":"echo","arguments":{"value":1e300}}}',
        INVALID_PARAMS,
    ),
    # Not JSON (NaN, Infinity, beyond a double, half a surrogate pair), but the id is readable.
    ('{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{"x":NaN}}', INVALID_PARAMS),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"tools/invoke","params":{"name":"echo","arguments":{"value":1e400}}}',
        INVALID_PARAMS,
    ),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"agent/run","params":{"prompt":"x","maxTokens":1'
        + "0" * 400
        + "}}",
        INVALID_PARAMS,
    ),
    (
        '{"jsonrpc":"2.0","id":{id},"method":"tools/invoke","params":{"name":"echo","arguments":{"value":"a\\ud800"}}}',
        INVALID_PARAMS,
    ),
    ('{"jsonrpc":"2.0","id":{id},"method":"tools/list","extra":-Infinity}', INVALID_REQUEST),
]
# Ids of every usable kind, the huge and the empty included: each is echoed as it came.
REQUEST_IDS: list[Callable[[int], int | str]] = [
    lambda n: f"b{n}",
    lambda n: 10**15 + n,
    lambda n: -(10**15) - n,
    lambda n: 10**300 + n,
    lambda n: "" if n == 4 else f"é\u2603{n}",
]


async def test_malformed_requests_are_answered_with_their_id(client: Client) -> None:
    for n, (template, code) in enumerate(MALFORMED_REQUESTS):
        request_id = REQUEST_IDS[n % len(REQUEST_IDS)](n)
        body = template.replace("{id}", json.dumps(request_id))
        answer = client.session.expect_response(request_id)
        client.session.send_frame(body.encode())
        with pytest.raises(RpcError) as raised:
            await asyncio.wait_for(answer, 30)
        assert raised.value.code == code, (body, raised.value)
        assert await client.responsive(), body
    client.assert_clean()


# Answered with id null: no usable id, or no JSON to find one in. (body, code)
NULL_ID_ANSWERS = [
    ("[]", INVALID_REQUEST),
    ('[{"jsonrpc":"2.0","id":"c1","method":"tools/list"}]', INVALID_REQUEST),  # batches: not supported
    ('[{"jsonrpc":"2.0","method":"initialized","params":{}}, 1]', INVALID_REQUEST),
    ("5", INVALID_REQUEST),
    ('"tools/list"', INVALID_REQUEST),
    ("null", INVALID_REQUEST),
    ("true", INVALID_REQUEST),
    ("{}", INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{},"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":[1],"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":true,"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":null,"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":{"a":1},"method":"exit"}', INVALID_REQUEST),
    ('{"jsonrpc":"2.0","id":NaN,"method":"tools/list"}', PARSE_ERROR),
    ('{"jsonrpc":"2.0","id":Infinity,"method":"tools/list"}', PARSE_ERROR),
    ('{"jsonrpc":"2.0","id":-Infinity,"method":"tools/list"}', PARSE_ERROR),
    ('{"jsonrpc":"2.0","id":1e400,"method":"tools/list"}', PARSE_ERROR),
    # More digits than Python's int() reads: not even a lenient reading finds the id.
    ('{"jsonrpc":"2.0","id":"c4","method":"tools/list","params":{"n":' + "9" * 5000 + "}}", PARSE_ERROR),
    (nested(1000), PARSE_ERROR),  # the 2 KB killer
    ('{"a":' * 3000 + "1" + "}" * 3000, PARSE_ERROR),
    ('{"jsonrpc":"2.0","id":"c6","method":"tools/list","params":' + nested(50_000) + "}", PARSE_ERROR),
    ("{not json", PARSE_ERROR),
    ("", PARSE_ERROR),
]
NOT_UTF_8 = [b"\xff\xfe{}", "{}".encode("utf-16"), b'{"a":"\xc3"}']


async def test_messages_without_a_usable_id_are_answered_with_id_null(client: Client) -> None:
    cases = [(body.encode(), code) for body, code in NULL_ID_ANSWERS] + [
        (body, PARSE_ERROR) for body in NOT_UTF_8
    ]
    for body, code in cases:
        before = len(client.session.parse_errors)
        client.session.send_frame(body)
        error = await client.null_id_error(before)
        assert error["code"] == code, (body[:100], error)
        assert await client.responsive(), body[:100]
        assert len(client.session.parse_errors) == before + 1, body[:100]  # one answer, no more
    client.assert_clean()


# Framing corners: whatever the bytes, the daemon finds the next frame.
BAD_FRAMES = [
    b"Content-Length: 99999999999\r\n\r\n{}",  # over the 64 MiB limit, and no body comes
    b"Content-Length: 1000000\r\n\r\n{}",  # a body that never completes
    b"Content-Length: -5\r\n\r\n{}",
    b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}",
    b"Content-Length: 5\r\n{}",  # no blank line
    b"Content-Length: 2{}",  # no line break at all
    b"Content-Length: 50\r\n\r\n" + b'{"jsonrpc":"2.0","id":"cut","method":"tools/list"',
    b"Content-Type: application/json\r\n\r\n{}",  # no Content-Length
    b"\r\n\r\n\r\n",
    b"x" * (200 * 1024),  # a long line without a line break
    b"Content-Length: 3\r\n\r\n",  # its body would be the start of the next frame
    b"Content-Length: 30\r\n\r\nab",
    b"\x00\xff" * 100 + b"\r\n",
]


async def test_a_bad_frame_costs_only_itself(client: Client) -> None:
    for data in BAD_FRAMES:
        client.session.send_raw(data)
        assert await client.responsive(attempts=1), data[:100]
    client.assert_clean()


async def test_a_message_over_64_mib_is_refused_unread(client: Client) -> None:
    before = len(client.session.parse_errors)
    client.session.send_raw(b"Content-Length: %d\r\n\r\n" % (64 * MIB + 1) + b" " * (64 * MIB + 1))
    assert (await client.null_id_error(before))["code"] == INVALID_REQUEST
    assert await client.responsive()
    client.assert_clean()


# -- (c) the lifecycle ---------------------------------------------------------------------------


async def test_after_shutdown_requests_are_refused_and_exit_still_ends_with_0(client: Client) -> None:
    session = client.session
    assert await session.request("shutdown") is None
    for method, params in [("tools/list", None), ("tools/invoke", {"name": "echo"}), ("no/such", {})]:
        with pytest.raises(RpcError) as raised:
            await session.request(method, params, timeout=30)
        assert raised.value.code == INVALID_REQUEST
        assert "shutting down" in raised.value.message
    session.send_frame(b'{"jsonrpc":"2.0","method":"$/cancelRequest"}')
    session.send_frame(b'{"jsonrpc":"2.0","method":"exit","params":["now"]}')  # malformed: not an exit
    with pytest.raises(RpcError) as raised:
        await session.request("tools/list", timeout=30)
    assert raised.value.code == INVALID_REQUEST
    session.send_frame(b'{"jsonrpc":"2.0","method":"exit","params":[]}')  # empty params are none
    assert await session.wait_exit() == 0
    client.assert_clean()


async def test_exit_without_shutdown_ends_with_1(client: Client) -> None:
    client.session.notify("exit")
    assert await client.session.wait_exit() == 1


async def test_before_initialize_nothing_ends_the_daemon(start_daemon: StartDaemon, tools_dir: Path) -> None:
    session = await start_daemon("--tools-dir", tools_dir, initialize=False)
    client = Client(session, session.record_messages())
    early = [*MALFORMED_NOTIFICATIONS[:12], nested(1000), '{"jsonrpc":"2.0","id":NaN,"method":"x"}', "[]"]
    for body in early:
        session.send_frame(body.encode())
    answer = session.expect_response("early")
    session.send_frame(b'{"jsonrpc":"1.0","id":"early","method":"tools/list"}')
    with pytest.raises(RpcError) as raised:
        await asyncio.wait_for(answer, 30)
    assert raised.value.code == INVALID_REQUEST
    with pytest.raises(RpcError) as raised:
        await session.request("tools/list", timeout=30)
    assert raised.value.code == SERVER_NOT_INITIALIZED
    await session.initialize()
    assert await client.responsive()
    assert [error["code"] for error in session.parse_errors] == [PARSE_ERROR, PARSE_ERROR, INVALID_REQUEST]
    client.assert_clean()


# -- (b) hypothesis: raw bytes at the framing level ----------------------------------------------

VALID_BODY = b'{"jsonrpc":"2.0","id":"%s","method":"tools/list"}'
LINE_ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"", b"\r", b" \r\n"])
BAD_LENGTHS = [b"-5", b"", b"abc", b"5.0", b"0x10", b"9" * 30, b" 12 "]
GARBAGE = st.binary(max_size=40)
HEADER_LINES = st.lists(
    st.one_of(
        st.sampled_from([b"Content-Type: x\r\n", b"Content-Length: 7\r\n", b"X: y\r\n", b"\r\n"]),
        GARBAGE.map(lambda junk: junk + b"\r\n"),
    ),
    max_size=2,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid request frame with its framing broken: (the bytes, the request's id)."""
    request_id = f"m{draw(st.integers(0, 10**9))}"
    body = VALID_BODY % request_id.encode()
    length = draw(
        st.integers(-40, 100).map(lambda delta: str(max(0, len(body) + delta)).encode())
        | st.integers(64 * MIB + 1, 10**19).map(lambda n: str(n).encode())
        | st.sampled_from(BAD_LENGTHS)
    )
    header = b"Content-Length: " + length + draw(LINE_ENDS)
    before, after = draw(HEADER_LINES), draw(HEADER_LINES)
    cut = draw(st.integers(0, len(body)))
    body = draw(st.sampled_from([body, body[:cut], body + draw(GARBAGE)]))
    prefix = draw(st.one_of(st.just(b""), GARBAGE))
    frame = prefix + b"".join(before) + header + b"".join(after) + draw(LINE_ENDS) + body
    return frame, request_id


RAW_INPUT = st.one_of(
    st.binary(max_size=200).map(lambda data: (data, "")),
    mutated_frames(),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=RAW_INPUT)
async def test_any_bytes_leave_the_daemon_serving(client: Client, raw: tuple[bytes, str]) -> None:
    data, request_id = raw
    if request_id:
        client.session.expect_response(request_id)  # the frame may still be read whole
    client.session.send_raw(data)
    assert await client.responsive(), data[:200]
    assert client.session.violations == []
    client.assert_clean()


# -- (b) hypothesis: JSON of any shape as messages -----------------------------------------------


# How far a message is JSON: the daemon reads it; only Python's json module reads it (NaN,
# Infinity, numbers beyond a double's range, half a surrogate pair); or not even that.
STANDARD, LENIENT, UNREADABLE = "standard", "lenient", "unreadable"


@dataclass(frozen=True)
class Raw:
    """JSON text put as it is into a message: what json.dumps cannot write."""

    text: str
    kind: str

    def __repr__(self) -> str:
        return f"Raw({self.text[:20]!r}{'…' if len(self.text) > 20 else ''}, {self.kind})"


RAW_VALUES = st.sampled_from(
    [
        Raw("NaN", LENIENT),
        Raw("Infinity", LENIENT),
        Raw("-Infinity", LENIENT),
        Raw("1e400", LENIENT),
        Raw("-1e400", LENIENT),
        Raw("1" + "0" * 400, LENIENT),
        Raw('"\\udc00"', LENIENT),  # half a surrogate pair
        Raw("9" * 5000, UNREADABLE),  # more digits than int() reads
        Raw("1e-400", STANDARD),
        Raw("-0", STANDARD),
        Raw("1E+2", STANDARD),
        Raw("123456789012345678901234567890", STANDARD),
        Raw('"\\ud83d\\ude00"', STANDARD),  # a whole pair
    ]
) | st.integers(1000, 3000).map(lambda depth: Raw(nested(depth), UNREADABLE))


def mostly(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """`common`, except one draw in `one_in` (or so) from `rare`."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else common)


ODD_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf]) | RAW_VALUES
SCALARS = mostly(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    ODD_NUMBERS,
    one_in=8,
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
KNOWN_METHODS = [
    "tools/list",
    "tools/invoke",
    "tools/didChange",
    "$/cancelRequest",
    "$/setTrace",
    "$/progress",
    "initialized",
    "workspace/didChangeConfiguration",
    "workspace/didChangeWorkspaceFolders",
    "workspace/executeCommand",
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didClose",
    "textDocument/hover",
    "window/workDoneProgress/cancel",
]
# These change the daemon's state for good (or start the model): test_after_shutdown… covers them.
LIFECYCLE = {"exit", "shutdown", "initialize", "agent/run"}
METHODS = (
    st.sampled_from(KNOWN_METHODS)
    | st.text(max_size=16).filter(lambda method: method not in LIFECYCLE)
    | st.text(max_size=10).map(lambda rest: "$/" + rest)
    | SCALARS
)
# Ids that the daemon can echo (each replaced by a unique one of its type before sending), and not.
USABLE_IDS = st.integers() | st.text(max_size=8)
ODD_IDS: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.floats()
    | RAW_VALUES.filter(lambda raw: raw.kind != STANDARD)
    | st.lists(SCALARS, max_size=2)
    | st.just({})
)
PARAMS = VALUES | st.dictionaries(st.text(max_size=8), VALUES, max_size=3)
VERSIONS = mostly(st.just("2.0"), VALUES, one_in=6)
MESSAGES = st.one_of(
    st.fixed_dictionaries(
        {"jsonrpc": VERSIONS, "method": METHODS, "id": USABLE_IDS}, optional={"params": PARAMS}
    ),
    st.fixed_dictionaries(
        {"jsonrpc": VERSIONS, "method": METHODS}, optional={"id": ODD_IDS, "params": PARAMS}
    ),
    st.fixed_dictionaries(
        {"jsonrpc": VERSIONS}, optional={"id": USABLE_IDS | ODD_IDS, "result": VALUES, "error": VALUES}
    ),
    VALUES,
).filter(lambda message: not (isinstance(message, dict) and message.get("method") in LIFECYCLE))


def to_json(value: Any) -> str:
    """`value` as JSON text, with each Raw written as it is (and NaN as NaN)."""
    raws: list[str] = []

    def placeholder(item: Any) -> str:
        if not isinstance(item, Raw):
            raise TypeError(item)
        raws.append(item.text)
        return f"\0raw{len(raws) - 1}\0"

    text = json.dumps(value, default=placeholder)
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\0raw{index}\0"), raw, 1)
    return text


def readability(value: Any) -> str:
    """STANDARD, LENIENT or UNREADABLE: the worst of the parts of `value`."""
    kinds = set(_kinds(value))
    return UNREADABLE if UNREADABLE in kinds else LENIENT if LENIENT in kinds else STANDARD


def _kinds(value: Any) -> Iterator[str]:
    if isinstance(value, Raw):
        yield value.kind
    elif isinstance(value, float) and not math.isfinite(value):
        yield LENIENT
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            yield LENIENT
    elif isinstance(value, dict):
        for item in value.values():
            yield from _kinds(item)
    elif isinstance(value, list):
        for item in value:
            yield from _kinds(item)


def usable_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=MESSAGES)
async def test_messages_of_any_shape_are_answered_and_the_daemon_serves_on(
    client: Client, message: Any
) -> None:
    session = client.session
    answer: asyncio.Future[Any] | None = None
    if isinstance(message, dict) and usable_id(message.get("id")):
        # A fresh id of the same type, so that every answer can be told apart.
        number = next(client.ids)
        message = {**message, "id": f"h{number}" if isinstance(message["id"], str) else 10**12 + number}
        answer = session.expect_response(message["id"])
    before = len(session.parse_errors)
    session.send_frame(to_json(message).encode())
    assert await client.responsive(), message

    refused = [error["code"] for error in session.parse_errors[before:]]  # answered with id null
    kind = readability(message)
    is_request = answer is not None and "method" in message
    if kind == UNREADABLE:
        event("not JSON at all: a parse error")
        assert refused == [PARSE_ERROR], message
    elif kind == LENIENT and is_request:
        event("not JSON, but a request with a usable id: answered with it")
        envelope = {key: item for key, item in message.items() if key != "params"}
        with pytest.raises(RpcError) as raised:
            await asyncio.wait_for(asyncio.shield(answer), 30)  # type: ignore[arg-type]
        assert raised.value.code == (INVALID_PARAMS if readability(envelope) == STANDARD else INVALID_REQUEST)
        assert refused == [], message
    elif kind == LENIENT:
        event("not JSON, and no request: a parse error, unless a notification or response")
        unanswered = isinstance(message, dict) and (
            ("method" in message and "id" not in message)
            or ("method" not in message and "id" in message and ("result" in message or "error" in message))
        )
        assert refused == ([] if unanswered else [PARSE_ERROR]), message
    elif not isinstance(message, dict):
        event("not an object: an invalid request")
        assert refused == [INVALID_REQUEST], message
    elif is_request:
        event("a request with a usable id: answered with it")
        try:
            await asyncio.wait_for(asyncio.shield(answer), 30)  # type: ignore[arg-type]
        except RpcError as error:
            assert error.code in EXPECTED_ERRORS, (message, error)
    assert session.violations == []
    client.assert_clean()
