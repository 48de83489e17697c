"""The real daemon against a hostile Hub (HF_ENDPOINT on a loopback server): whatever it answers,
nothing is written outside the cache (not the person's grants file, above all), never more than
the announced size, in bounded memory, and a cancelled run stops the download.

The model that would load the file is scripted: only the download is under test here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llama_agent.common.errors import MODEL_UNAVAILABLE, REQUEST_CANCELLED

from tests.e2e.test_models_by_name import REFERENCE, load_progress, start
from tests.fake_hub import (
    Answer,
    FakeHub,
    Rewrite,
    bytes_on_disk,
    chain,
    endless,
    files_in,
    outside_cache,
    send_body,
    set_headers,
    watched,
)
from tests.rpc import RpcError, StartDaemon

REPO, FILE = REFERENCE.split(":")
CONTENT = b"GGUF" + bytes(range(256)) * 4096
# From the repository's blobs/ folder in the cache (sandbox/cache/models/models--OWNER--NAME/blobs)
# up to the sandbox, where the person's config directory is.
GRANTS = "config/llama-agent/grants.toml"
UP = "../../../../"
# All the sandbox holds but the cache, before and after: the config directory, the empty tools directory.
OUTSIDE_THE_CACHE = ["config", "config/llama-agent", "no-tools"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """The cache and the person's config directory, side by side, and nothing else."""
    (tmp_path / "sandbox" / "cache").mkdir(parents=True)
    (tmp_path / "sandbox" / "config" / "llama-agent").mkdir(parents=True)
    return tmp_path / "sandbox"


def daemon_env(sandbox: Path, **more: str) -> dict[str, str]:
    return {"LLAMA_AGENT_CONFIG_DIR": str(sandbox / "config" / "llama-agent"), **more}


def not_found_naming(commit: str) -> Rewrite:
    """Every answer a 404 for the file, naming `commit` (huggingface_hub would mark the file's
    absence at .no_exist/COMMIT/FILE)."""
    headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": "no such file", "X-Repo-Commit": commit}
    return lambda served, answer: Answer(404, dict(headers))


@pytest.mark.parametrize(
    ("rewrite", "said"),
    [
        pytest.param(set_headers({"ETag": f'"{UP}{GRANTS}"'}), "ETag", id="etag"),
        pytest.param(set_headers({"X-Repo-Commit": f"{UP}config/llama-agent"}), "commit", id="commit"),
        pytest.param(not_found_naming(f"{UP}config/llama-agent"), "no file", id="404-naming-a-commit"),
        pytest.param(set_headers({"ETag": f'"{UP}{GRANTS}"'}, "GET"), None, id="etag-of-the-get-only"),
    ],
)
async def test_the_hub_cannot_write_the_grants_file(
    start_daemon: StartDaemon, sandbox: Path, rewrite: Rewrite, said: str | None
) -> None:
    # The body a hostile hub would have the daemon write as the person's approvals.
    approvals = b'[tools.write_file]\nwrite = ["/"]\n'
    cache = sandbox / "cache"
    with FakeHub({REPO: {FILE: approvals}}, rewrite=rewrite) as hub:
        session = await start(start_daemon, cache, hub, env=daemon_env(sandbox))
        ended = (await load_progress(session))[-1]
        if said is not None:
            with pytest.raises(RpcError) as raised:
                await session.request("agent/run", {"prompt": "hi", "toolChoice": "none"})

    assert not (sandbox / GRANTS).exists()
    assert outside_cache(sandbox) == OUTSIDE_THE_CACHE
    if said is not None:  # refused on the HEAD's answer, with a clear error, and nothing kept
        assert REFERENCE in ended["message"] and said in ended["message"]
        assert raised.value.code == MODEL_UNAVAILABLE
        assert said in raised.value.message
        assert files_in(cache / "models") == []
        assert "GET" not in {served.method for served in hub.requests}
    else:  # the GET's headers are not used: the file lands where the checked HEAD said
        assert "loaded" in ended["message"]
        assert [path.read_bytes() for path in cache.glob(f"models/*/snapshots/*/{FILE}")] == [approvals]


async def test_an_endless_body_stops_at_the_announced_size(start_daemon: StartDaemon, sandbox: Path) -> None:
    """96 MiB announced, then sent without end: the daemon keeps at most 96 MiB on disk and its
    memory grows by less than 64 MiB (it could not hold the body if it tried)."""
    announced = 96 * 2**20
    endless_body = chain(set_headers({"X-Linked-Size": str(announced)}, "HEAD"), send_body(endless()))
    with FakeHub({REPO: {FILE: CONTENT}}, rewrite=endless_body) as hub:
        session = await start(start_daemon, sandbox / "cache", hub, env=daemon_env(sandbox))
        await wait_for(lambda: bytes_on_disk(sandbox) > 0)  # huggingface_hub imported, streaming
        with watched(lambda: bytes_on_disk(sandbox)) as disk, watched(session.rss_bytes) as rss:
            ended = (await load_progress(session))[-1]

    assert f"more than the {announced} bytes it announced" in ended["message"]
    assert hub.bytes_sent > announced
    assert disk[1] <= announced
    assert rss[1] - rss[0] < 64 * 2**20, f"the daemon grew by {(rss[1] - rss[0]) / 2**20:.0f} MiB"
    assert files_in(sandbox / "cache" / "models") == []
    assert outside_cache(sandbox) == OUTSIDE_THE_CACHE


async def test_a_cancelled_run_stops_the_download(start_daemon: StartDaemon, sandbox: Path) -> None:
    """The only run waiting for the model is cancelled: within a second the download stops (the
    connection closed, the partial file removed); meanwhile other requests are served; and the
    next run downloads the model again."""
    cache = sandbox / "cache"
    slow = chain(set_headers({"X-Linked-Size": str(2**29)}, "HEAD"), send_body(endless(pause=0.01)))
    with FakeHub({REPO: {FILE: CONTENT}}, rewrite=slow) as hub:
        session = await start(start_daemon, cache, hub, eager=False, env=daemon_env(sandbox))
        run_id, running = session.request_future("agent/run", {"prompt": "hi", "toolChoice": "none"})
        await wait_for(lambda: bytes_on_disk(cache / "models") > 2**20)
        served = time.monotonic()
        await session.request("tools/list", timeout=5)
        assert time.monotonic() - served < 2, "the event loop is free while the model downloads"

        session.cancel(run_id)
        cancelled = time.monotonic()
        with pytest.raises(RpcError) as raised:
            await asyncio.wait_for(running, 5)
        answered = time.monotonic() - cancelled
        await wait_for(lambda: hub.bodies_streaming == 0 and files_in(cache / "models") == [])
        stopped = time.monotonic() - cancelled
        sent = hub.bytes_sent
        await asyncio.sleep(0.3)
        assert hub.bytes_sent == sent, "nothing more is read"

        hub.rewrite = None  # an honest hub: the next run downloads the model and runs
        result = await session.request("agent/run", {"prompt": "hi", "toolChoice": "none"})

    assert raised.value.code == REQUEST_CANCELLED
    assert answered < 1.0
    assert stopped < 1.0, f"the download went on for {stopped:.2f} s after the cancel"
    assert hub.hung_up == 1
    assert result["answer"] == "hello"
    assert [served.method for served in hub.requests] == ["HEAD", "GET", "HEAD", "GET"]
    assert outside_cache(sandbox) == OUTSIDE_THE_CACHE


async def test_a_run_that_waits_on_keeps_the_download_going(start_daemon: StartDaemon, sandbox: Path) -> None:
    """Of two runs waiting for the model, one is cancelled: the download goes on for the other."""
    cache = sandbox / "cache"
    paced = send_body(iter_paced(CONTENT, pieces=20, pause=0.05))
    with FakeHub({REPO: {FILE: CONTENT}}, rewrite=paced) as hub:
        session = await start(start_daemon, cache, hub, eager=False, env=daemon_env(sandbox))
        first_id, first = session.request_future("agent/run", {"prompt": "hi", "toolChoice": "none"})
        _, second = session.request_future("agent/run", {"prompt": "hi", "toolChoice": "none"})
        await wait_for(lambda: bytes_on_disk(cache / "models") > 0)
        session.cancel(first_id)
        with pytest.raises(RpcError):
            await asyncio.wait_for(first, 5)
        result = await asyncio.wait_for(second, 30)

    assert result["answer"] == "hello"
    assert hub.hung_up == 0
    assert [served.method for served in hub.requests] == ["HEAD", "GET"]


async def test_a_run_just_after_a_cancel_downloads_again(start_daemon: StartDaemon, sandbox: Path) -> None:
    """A run that comes as the download it would wait for is being stopped starts it again."""
    slow = chain(set_headers({"X-Linked-Size": str(2**29)}, "HEAD"), send_body(endless(pause=0.01)))
    with FakeHub({REPO: {FILE: CONTENT}}, rewrite=slow) as hub:
        session = await start(start_daemon, sandbox / "cache", hub, eager=False, env=daemon_env(sandbox))
        first_id, first = session.request_future("agent/run", {"prompt": "hi", "toolChoice": "none"})
        await wait_for(lambda: bytes_on_disk(sandbox / "cache" / "models") > 0)
        hub.rewrite = None
        session.cancel(first_id)
        _, second = session.request_future("agent/run", {"prompt": "hi", "toolChoice": "none"})
        with pytest.raises(RpcError):
            await asyncio.wait_for(first, 5)
        result = await asyncio.wait_for(second, 30)

    assert result["answer"] == "hello"
    assert [served.method for served in hub.requests] == ["HEAD", "GET", "HEAD", "GET"]


def iter_paced(content: bytes, *, pieces: int, pause: float) -> Callable[[], Iterator[bytes]]:
    size = -(-len(content) // pieces)

    def stream() -> Iterator[bytes]:
        for offset in range(0, len(content), size):
            time.sleep(pause)
            yield content[offset : offset + size]

    return stream


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)
