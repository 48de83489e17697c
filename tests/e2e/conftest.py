"""Fixtures of the end-to-end tests: real daemons, over LSP (`start_daemon`, the strict
DaemonSession of tests/rpc.py) or through the typed client of each face (tests/clients.py)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.clients import (
    DaemonLaunch,
    OpenAcpClient,
    OpenFaceClient,
    OpenLspClient,
    OpenMcpClient,
    open_acp_client,
    open_client,
    open_lsp_client,
    open_mcp_client,
    start_lsp_daemon,
)
from tests.factories import ToolsDirFactory
from tests.rpc import DaemonSession, StartDaemon


@pytest.fixture
def tools_dir(make_tools_dir: ToolsDirFactory) -> Path:
    """A private tools directory holding copies of the bundled echo and print."""
    return make_tools_dir("echo", "print")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory for a tool's grant, with one file inside."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "inside.txt").write_text("granted content")
    return data


@pytest.fixture
def writer(make_tools_dir: ToolsDirFactory) -> Path:
    """A tools directory (to be named trusted) holding write_file, granted the workspace read-write."""
    return make_tools_dir("write_file", policies={"write_file": 'workspace = "rw"'}, name="writer")


@pytest.fixture
def daemon_launch(cache_dir: Path, config_dir: Path, tmp_path: Path) -> DaemonLaunch:
    """How this test starts daemons: the shared compile cache, its own config directory."""
    return DaemonLaunch(cache_dir, config_dir, tmp_path)


@pytest_asyncio.fixture
async def start_daemon(daemon_launch: DaemonLaunch) -> AsyncIterator[StartDaemon]:
    """Start daemons (`start_daemon(*args, script=..., initialize=..., init_params=...,
    eager_model=..., env=...)`: tests/clients.py's `start_lsp_daemon`) with `--cache-dir` preset,
    initialized unless `initialize=False`.

    Each daemon's config directory (`LLAMA_AGENT_CONFIG_DIR`, where grants.toml lives) is the
    test's `config_dir` unless `env` names another.

    The model loads on the first agent/run (`--lazy-model`) unless `eager_model`: most tests
    never use it. With `script` (a `ScriptedModel` spec: {"turns": [...], ...}) the daemon runs
    that scripted model instead of llama.cpp. Each daemon is killed at teardown, and every
    session is checked for bytes on stdout that are not protocol frames.
    """
    sessions: list[DaemonSession] = []

    async def start(*args: str | Path, **options: Any) -> DaemonSession:
        session = await start_lsp_daemon(daemon_launch, *args, **options)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        await session.kill()
    for session in sessions:
        assert session.violations == [], session.violations


@pytest.fixture
def lsp_client(daemon_launch: DaemonLaunch) -> OpenLspClient:
    """`async with lsp_client(*daemon_args, script=..., ...) as client:` (tests/clients.py)."""
    return functools.partial(open_lsp_client, daemon_launch)


@pytest.fixture
def acp_client(daemon_launch: DaemonLaunch) -> OpenAcpClient:
    """`async with acp_client(*daemon_args, script=..., editor=...) as client:`."""
    return functools.partial(open_acp_client, daemon_launch)


@pytest.fixture
def mcp_client(daemon_launch: DaemonLaunch) -> OpenMcpClient:
    """`async with mcp_client(*daemon_args, elicitation=...) as client:`."""
    return functools.partial(open_mcp_client, daemon_launch)


@pytest.fixture
def face_client(daemon_launch: DaemonLaunch) -> OpenFaceClient:
    """`async with face_client("lsp" | "acp" | "mcp", *daemon_args, **options) as client:`."""
    return functools.partial(open_client, daemon_launch)
