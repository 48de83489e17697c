"""`--model REPO:FILE.gguf` in the real daemon: downloaded once from the Hub's file API, with
progress, then used offline. The Hub is a loopback server (tests/fake_hub.py, via HF_ENDPOINT);
the model that loads the file is scripted, since only the download is under test here."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_agent.common.errors import MODEL_UNAVAILABLE

from tests.fake_hub import FakeHub
from tests.rpc import DaemonSession, RpcError, StartDaemon
from tests.scripted_model import answer

REFERENCE = "acme/tiny-GGUF:tiny-Q4.gguf"
CONTENT = os.urandom(3 * 1024 * 1024)
SCRIPT = {"turns": [answer("hello")]}


async def load_progress(session: DaemonSession) -> list[dict[str, Any]]:
    create = await session.wait_for_notification("window/workDoneProgress/create")
    token = create["params"]["token"]
    for _ in range(600):
        values = session.progress(token)
        if values and values[-1]["kind"] == "end":
            return values
        await asyncio.sleep(0.05)
    raise AssertionError(f"no end of the model's load: {session.progress(token)}")


async def start(
    start_daemon: StartDaemon,
    cache: Path,
    hub: FakeHub,
    *,
    eager: bool = True,
    env: dict[str, str] | None = None,
) -> DaemonSession:
    """A daemon on `--model REFERENCE` from `hub`, loading it at once unless not `eager`."""
    # No tools: the cache is the test's own (to see the download), and compiling tools into it
    # would take most of the test's time.
    no_tools = cache.parent / "no-tools"
    no_tools.mkdir(exist_ok=True)
    return await start_daemon(
        *("--tools-dir", no_tools, "--cache-dir", cache, "--model", REFERENCE),
        eager_model=eager,
        init_params={"capabilities": {"window": {"workDoneProgress": True}}},
        env={"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})},
        script=SCRIPT,
    )


async def test_a_model_by_name_is_downloaded_once_with_progress(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with FakeHub({"acme/tiny-GGUF": {"tiny-Q4.gguf": CONTENT}}) as hub:
        first = await start(start_daemon, cache, hub)
        progress = await load_progress(first)
        served_first = len(hub.requests)
        assert [request.method for request in hub.requests] == ["HEAD", "GET"]

        second = await start(start_daemon, cache, hub)
        await load_progress(second)
        assert len(hub.requests) == served_first  # from the cache: not a single request

    assert first.initialize_result["capabilities"]["experimental"]["llamaAgent"]["model"] == {
        "backend": "llama",
        "name": REFERENCE,
        "baseUrl": None,
    }
    reports = [value for value in progress if value["kind"] == "report"]
    assert reports and reports[-1]["percentage"] == 100
    assert [value["percentage"] for value in reports] == sorted(value["percentage"] for value in reports)
    assert "3.0 MiB" in reports[-1]["message"]
    assert "tiny-Q4.gguf" in progress[-1]["message"]
    downloaded = list(cache.glob("models/models--acme--tiny-GGUF/snapshots/*/tiny-Q4.gguf"))
    assert [path.read_bytes() == CONTENT for path in downloaded] == [True]
    result = await second.request("agent/run", {"prompt": "hi", "toolChoice": "none"})
    assert result["answer"] == "hello"
    assert result["model"] == {"backend": "llama", "name": "tiny-Q4.gguf", "baseUrl": None}


async def test_an_unknown_file_is_a_clear_error(start_daemon: StartDaemon, tmp_path: Path) -> None:
    with FakeHub({"acme/tiny-GGUF": {"other.gguf": b"x"}}) as hub:
        session = await start(start_daemon, tmp_path / "cache", hub)
        ended = (await load_progress(session))[-1]
        with pytest.raises(RpcError) as caught:
            await session.request("agent/run", {"prompt": "hi"})
    assert REFERENCE in ended["message"]
    assert caught.value.code == MODEL_UNAVAILABLE
    assert REFERENCE in caught.value.message


def test_the_command_line_shows_a_bar_while_it_downloads(tmp_path: Path) -> None:
    no_tools = tmp_path / "no-tools"
    no_tools.mkdir()
    command = [str(Path(sys.executable).with_name("llama-agent")), "run", "--model", REFERENCE]
    command += ["--tools-dir", str(no_tools), "--cache-dir", str(tmp_path / "cache"), "hi"]
    with FakeHub({"acme/tiny-GGUF": {"tiny-Q4.gguf": CONTENT}}) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    # Random bytes are no GGUF: the download is what is under test, and the error names the file.
    assert done.returncode == 2
    assert done.stdout == ""
    assert "100%" in done.stderr
    assert "3.15M/3.15M" in done.stderr  # 3 MiB in decimal megabytes
    assert "tiny-Q4.gguf" in done.stderr.splitlines()[-1]
