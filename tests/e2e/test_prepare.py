"""`llama-agent prepare`, as `make run`'s set-up runs it: the prompt starts a first run needs are
evaluated and kept on disk, so that run evaluates none of them; a second prepare finds them all."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_agent.config import REPO_ROOT

from tests.clients import run_cli
from tests.conftest import TEST_CACHE_DIR


@pytest.fixture
def fresh_prompts_cache(default_model: Path) -> Iterator[Path]:
    """A cache directory with the test cache's model and whatever tools it has compiled (hard
    links: no copy; a tool not compiled yet is compiled here) and no prompt state at all, as on a
    new machine after `make setup`."""
    root = Path(tempfile.mkdtemp(prefix="prepare-", dir=REPO_ROOT / "build"))
    try:
        for entry in ("components", "models"):
            if (TEST_CACHE_DIR / entry).is_dir():
                shutil.copytree(TEST_CACHE_DIR / entry, root / entry, copy_function=os.link, symlinks=True)
        shutil.copy2(TEST_CACHE_DIR / "signing.key", root / "signing.key")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _states(cache: Path) -> dict[str, int]:
    """Each prompt state's file and its inode: a state written again is a new file (written
    atomically, by rename); one found and restored is only touched."""
    return {path.name: path.stat().st_ino for path in (cache / "prompts").glob("*.state")}


def test_prepare_keeps_every_start_evaluated_and_a_second_prepare_evaluates_nothing(
    fresh_prompts_cache: Path,
) -> None:
    first = run_cli("prepare", "--cache-dir", fresh_prompts_cache)
    assert first.returncode == 0, first.stderr
    said = re.search(r"kept evaluated: the router's prefixes and (\d+) prompt starts?", first.stderr)
    assert said is not None, first.stderr
    starts = int(said.group(1))
    assert starts >= 1
    states = _states(fresh_prompts_cache)
    # The router's two questions (noisy channel, direct), and each completion start.
    assert len(states) == 2 + starts
    again = run_cli("prepare", "--cache-dir", fresh_prompts_cache)
    assert again.returncode == 0, again.stderr
    assert _states(fresh_prompts_cache) == states  # found, not written again
