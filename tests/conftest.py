"""Fixtures every folder of tests needs: an isolated config directory, the shared compile cache, the
built components, the embedded model, and private tools directories (tests/factories.py).

Each folder's own fixtures are in its conftest.py (tests/unit/, tests/e2e/); a test module defines
no fixture of a name these define (tests/unit/test_fixtures.py checks).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from llama_agent.cli.build import build_all, source_directories
from llama_agent.config import BUNDLED_TOOLS_DIR, REPO_ROOT
from llama_agent.runtime.wasm.host import WasmHost
from llama_agent.services.tools.registry import Toolbox

from tests.factories import ToolsDirFactory

TEST_COMPONENT_SOURCES = REPO_ROOT / "tests" / "components"
TEST_TOOLS_DIR = REPO_ROOT / "build" / "test-tools"
# Content-addressed, so sharing it between runs is safe and saves recompiling.
TEST_CACHE_DIR = REPO_ROOT / "build" / "test-cache"


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
def make_tools_dir(tmp_path: Path, request: pytest.FixtureRequest) -> ToolsDirFactory:
    """Private tools directories: `make_tools_dir("echo", built=["hostile"], wasm={...},
    policies={...})` (tests/factories.py). The components are built only when a test asks for them."""
    return ToolsDirFactory(
        tmp_path,
        bundled=lambda: Path(request.getfixturevalue("bundled_tools")),
        built=lambda: Path(request.getfixturevalue("test_tools")),
    )
