"""Shared fixtures: built components, a shared compile cache, daemon sessions over stdio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from llama_agent.cli.build import build_all, source_directories
from llama_agent.config import BUNDLED_TOOLS_DIR, REPO_ROOT
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox

from tests.rpc import DaemonSession

TEST_COMPONENT_SOURCES = REPO_ROOT / "tests" / "components"
TEST_TOOLS_DIR = REPO_ROOT / "build" / "test-tools"
# Content-addressed, so sharing it between runs is safe and saves recompiling.
TEST_CACHE_DIR = REPO_ROOT / "build" / "test-cache"

StartDaemon = Callable[..., Awaitable[DaemonSession]]


@pytest.fixture(autouse=True)
def config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config directory (grants.toml): none reads or writes the person's
    ~/.config/llama-agent. Outside `tmp_path`, which some tests watch as a tools directory."""
    directory = tmp_path_factory.mktemp("config") / "llama-agent"
    monkeypatch.setenv("LLAMA_AGENT_CONFIG_DIR", str(directory))
    return directory


@pytest.fixture(scope="session")
def bundled_tools(cache_dir: Path) -> Path:
    """The bundled tools, built (incrementally) from components/ and compiled into the test cache."""
    build_all(source_directories(REPO_ROOT / "components"), BUNDLED_TOOLS_DIR)
    Toolbox(WasmHost(cache_dir), [BUNDLED_TOOLS_DIR]).warm_cache()
    return BUNDLED_TOOLS_DIR


@pytest.fixture(scope="session")
def test_tools() -> Path:
    """Components that only tests use (e.g. one built for the legacy world)."""
    build_all(source_directories(TEST_COMPONENT_SOURCES), TEST_TOOLS_DIR)
    return TEST_TOOLS_DIR


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    TEST_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE_DIR


# Gemma's turn format, added to a copy of the embedded (template-less) model.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}"
    "{% endif %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="session")
def default_model(cache_dir: Path) -> Path:
    from llama_agent.runtime.models.llama import default_model_path

    return default_model_path(cache_dir)


@pytest.fixture(scope="session")
def templated_model(default_model: Path, cache_dir: Path) -> Path:
    """The embedded model's weights with a chat template in its metadata."""
    target = cache_dir / "models" / "gemma-3-270m-with-chat-template.gguf"
    if not target.exists():
        partial = target.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable,
                *("-m", "gguf.scripts.gguf_new_metadata", "--chat-template", GEMMA_CHAT_TEMPLATE),
                *(str(default_model), str(partial)),
            ],
            check=True,
            capture_output=True,
        )
        partial.replace(target)
    return target


@pytest.fixture
def tools_dir(tmp_path: Path, bundled_tools: Path) -> Iterator[Path]:
    """A private tools directory holding copies of the bundled echo and print."""
    directory = tmp_path / "tools"
    directory.mkdir()
    for name in ("echo", "print"):
        shutil.copy2(bundled_tools / f"{name}.wasm", directory / f"{name}.wasm")
    yield directory


@pytest_asyncio.fixture
async def start_daemon(cache_dir: Path, tmp_path: Path, config_dir: Path) -> AsyncIterator[StartDaemon]:
    """Start daemons with `--cache-dir` preset, initialized unless `initialize=False`.

    Each daemon's config directory (`LLAMA_AGENT_CONFIG_DIR`, where grants.toml lives) is the
    test's `config_dir` unless `env` names another.

    The model loads on the first agent/run (`--lazy-model`) unless `eager_model`: most tests
    never use it. With `script` (a `ScriptedModel` spec: {"turns": [...], ...}) the daemon runs
    that scripted model instead of llama.cpp. Each daemon is killed at teardown, and every
    session is checked for bytes on stdout that are not protocol frames.
    """
    sessions: list[DaemonSession] = []

    async def start(
        *args: str | Path,
        initialize: bool = True,
        init_params: dict[str, Any] | None = None,
        eager_model: bool = False,
        env: dict[str, str] | None = None,
        script: dict[str, Any] | None = None,
    ) -> DaemonSession:
        lazy = [] if eager_model else ["--lazy-model"]
        env = {"LLAMA_AGENT_CONFIG_DIR": str(config_dir), **(env or {})}
        command = None
        if script is not None:
            script_file = tmp_path / f"script-{len(sessions)}.json"
            script_file.write_text(json.dumps(script))
            command = [sys.executable, "-m", "tests.scripted_daemon", str(script_file)]
            env = {"PYTHONPATH": str(REPO_ROOT), **env}
        session = await DaemonSession.open(
            ["--cache-dir", str(cache_dir), *lazy, *map(str, args)],
            initialize=initialize,
            init_params=init_params,
            env=env,
            command=command,
        )
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        await session.kill()
    for session in sessions:
        assert session.violations == [], session.violations
