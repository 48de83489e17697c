"""The openai backend against a hostile model server, through the real daemon: every read from
the server bounded, max_tokens enforced on the daemon's side, events of the wrong shape refused
as the model being unavailable, and the daemon free to serve while a hostile stream runs.

The server (`HostileServer`, tests/model_server.py) is a real HTTP server on 127.0.0.1 that
needs no model. Each case of the unit tests (tests/unit/test_openai_backend.py) that needs no
socket is tested there; here are the ones that need the daemon whole.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import MODEL_UNAVAILABLE, REQUEST_CANCELLED

from tests.model_server import HostileServer, Hostility, piece_text
from tests.rpc import DaemonSession, RpcError, StartDaemon

MIB = 1024 * 1024
# What the daemon may grow by while a hostile server streams at it (docs/security.md, "Memory").
DAEMON_GROWTH_CEILING = 64 * MIB
ECHO_WITHIN_SECONDS = 1.0  # a tool call answered while a hostile stream runs
CANCEL_WITHIN_SECONDS = 2.0  # a cancelled run answered, its stream closed
RUN = {"prompt": "Count.", "toolChoice": "none"}


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


async def daemon_for(start: StartDaemon, tools_dir: Path, server: HostileServer) -> DaemonSession:
    session = await start("--tools-dir", tools_dir, "--backend", "openai", "--base-url", server.url)
    await session.request("tools/list")  # tools loaded: their memory is in the baseline
    return session


async def failed_run(session: DaemonSession, **params: Any) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await session.request("agent/run", {**RUN, **params}, timeout=60)
    return caught.value


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (from /proc, as tests/rpc.py reads memory)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakMemory:
    """The daemon's resident memory, sampled every 20 ms while in a `with` block."""

    def __init__(self, session: DaemonSession) -> None:
        self.session = session
        self.baseline = session.rss_bytes()
        self.peak = self.baseline
        self._sampling: asyncio.Task[None] | None = None

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    async def __aenter__(self) -> PeakMemory:
        self._sampling = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._sampling is not None
        self._sampling.cancel()
        self.peak = max(self.peak, self.session.rss_bytes())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.session.rss_bytes())
            await asyncio.sleep(0.02)


def text_events(session: DaemonSession, token: str) -> list[str]:
    return [
        value["llamaAgent"]["text"]
        for value in session.progress(token)
        if value.get("llamaAgent", {}).get("event") == "text"
    ]


async def polled(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("hostility", "complaint"),
    [
        (Hostility(chat="unended_line"), "sent a line of more than 1 MiB"),
        (Hostility(models="endless"), "answered with a body of more than 4 MiB"),
        (Hostility(chat="error_body", error_status=404), 'answered HTTP 404 ({"error": {"message": "yyyy'),
        (Hostility(chat="error_body", error_status=400), "takes none of the ways"),
        (Hostility(chat="padding"), "sent more than 3 MiB for one turn of at most 256 tokens"),
    ],
    ids=["a line without end", "an endless model list", "a 100 MB error", "100 MB refusals", "padding"],
)
async def test_every_read_from_the_server_is_bounded(
    start_daemon: StartDaemon, tools_dir: Path, hostile: HostileServer, hostility: Hostility, complaint: str
) -> None:
    hostile.hostility = hostility
    session = await daemon_for(start_daemon, tools_dir, hostile)

    async with PeakMemory(session) as memory:
        error = await failed_run(session, maxTokens=256)

    assert error.code == MODEL_UNAVAILABLE
    assert f"the model server at {hostile.url}" in error.message or f"{hostile.url}/models" in error.message
    assert complaint in error.message
    assert len(error.message) < 2000  # the server's words quoted in part
    assert memory.growth < DAEMON_GROWTH_CEILING, memory.growth
    await polled(lambda: hostile.seen.client_gone >= 1, timeout=10)  # the rest was never read
    assert await session.echoes()


async def test_max_tokens_ends_a_stream_that_never_does(
    start_daemon: StartDaemon, tools_dir: Path, hostile: HostileServer
) -> None:
    hostile.hostility = Hostility(chat="pieces", pieces=None)  # it ignores max_tokens
    session = await daemon_for(start_daemon, tools_dir, hostile)

    result = await session.request("agent/run", {**RUN, "maxTokens": 50, "workDoneToken": "t"}, timeout=60)

    assert hostile.seen.max_tokens == [50]
    assert result["stopReason"] == "maxTokens"
    assert result["usage"]["completionTokens"] == 50
    pieces = text_events(session, "t")
    assert len(pieces) == 50  # the opening `{"answer": "`, then 49 numbers
    assert result["answer"] == "".join(piece_text(n) for n in range(49)).strip()
    await polled(lambda: hostile.seen.client_gone == 1, timeout=10)  # the stream was closed


async def test_the_daemon_serves_and_cancels_while_a_flood_streams(
    start_daemon: StartDaemon, tools_dir: Path, hostile: HostileServer
) -> None:
    # 10,000 pieces a second for as long as the daemon reads (max_tokens allows 32,768).
    hostile.hostility = Hostility(chat="pieces", pieces=None, batch=200, pace_seconds=0.02)
    session = await daemon_for(start_daemon, tools_dir, hostile)
    async with PeakMemory(session) as memory:
        run_id, run = session.request_future("agent/run", {**RUN, "maxTokens": 32768, "workDoneToken": "t"})
        await session.wait_until(lambda: len(session.notifications) > 1000, timeout=30)

        started = time.monotonic()
        echoed = await session.request("tools/invoke", {"name": "echo", "arguments": {"value": "here"}})
        echo_seconds = time.monotonic() - started
        assert not run.done()  # the flood was still streaming
        session.cancel(run_id)
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(run, CANCEL_WITHIN_SECONDS)
        cancel_seconds = time.monotonic() - started - echo_seconds

    assert echoed["content"][0]["text"] == "here"
    assert echo_seconds < ECHO_WITHIN_SECONDS, echo_seconds
    assert caught.value.code == REQUEST_CANCELLED, cancel_seconds
    await polled(lambda: hostile.seen.client_gone == 1, timeout=CANCEL_WITHIN_SECONDS)
    assert memory.growth < DAEMON_GROWTH_CEILING, memory.growth


async def test_twenty_thousand_pieces_cost_time_in_proportion(
    start_daemon: StartDaemon, tools_dir: Path, hostile: HostileServer
) -> None:
    hostile.hostility = Hostility(chat="pieces", pieces=20_000)
    session = await daemon_for(start_daemon, tools_dir, hostile)
    before = cpu_seconds(session.process.pid)

    result = await session.request(
        "agent/run", {**RUN, "maxTokens": 32768, "workDoneToken": "t"}, timeout=120
    )

    spent = cpu_seconds(session.process.pid) - before
    assert result["stopReason"] == "answer"
    assert result["answer"] == "".join(piece_text(n) for n in range(20_000))
    assert result["usage"]["completionTokens"] == 20_002  # with the opening and the close
    assert len(text_events(session, "t")) == 20_002
    # About 1 s here (backend, agent and LSP progress); re-reading the turn at each piece took
    # minutes.
    assert spent < 15.0, spent


# Events of the wrong shape, a representative few (all of them: the unit tests).
MALFORMED = {
    "an array": "[1, 2]",
    "null": "null",
    "choices not a list": '{"choices": {"0": {}}}',
    "content a number": '{"choices": [{"delta": {"content": 5}}]}',
    "a huge tool call index": '{"choices": [{"delta": {"tool_calls": [{"index": 1e400}]}}]}',
    "arguments an object": (
        '{"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}}]}'
    ),
    "usage not numbers": '{"choices": [], "usage": {"prompt_tokens": "many"}}',
    "finish_reason a number": '{"choices": [{"delta": {}, "finish_reason": 7}]}',
}


@pytest.mark.parametrize("shape", MALFORMED)
async def test_an_event_of_the_wrong_shape_is_the_model_unavailable(
    start_daemon: StartDaemon, tools_dir: Path, hostile: HostileServer, shape: str
) -> None:
    hostile.hostility = Hostility(chat="event", event=MALFORMED[shape])
    session = await daemon_for(start_daemon, tools_dir, hostile)

    error = await failed_run(session)

    assert error.code == MODEL_UNAVAILABLE, error.message
    assert f"the model server at {hostile.url}" in error.message
    assert "not an OpenAI chat-completions chunk" in error.message
    assert await session.echoes()
