"""A cache directory someone else could write supplies no model and keeps no prompt state: the
model file is loaded as found there, so the daemon loads from a private directory instead."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llama_agent.runtime.models.backend import AnyBackend, ModelSettings
from llama_agent.services.models import ModelService

from tests.scripted_model import ScriptedModel
from tests.unsafe_files import give_to_another_user, tree


def loaded_from(cache_dir: Path) -> Path:
    """The cache directory the model service hands its loader."""
    seen: list[Path] = []
    model = ScriptedModel([])

    def loader(settings: ModelSettings, directory: Path) -> AnyBackend:
        seen.append(directory)
        return model.loader()(settings, directory)

    service = ModelService(ModelSettings(), cache_dir, loader)
    try:
        service.start_loading().result(timeout=30)
    finally:
        service.close()
    [directory] = seen
    return directory


def test_a_cache_of_the_persons_own_is_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert loaded_from(cache) == cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # made for the person alone


def test_a_cache_another_user_owns_is_neither_read_nor_written(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF theirs")
    give_to_another_user(cache, cache / "models", cache / "models" / "gemma-3-270m-q4_k_m.gguf")
    before = tree(cache)
    used = loaded_from(cache)
    assert used != cache and not used.is_relative_to(cache)
    info = used.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700)
    assert tree(cache) == before


def test_a_world_writable_cache_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    assert loaded_from(cache) != cache
    assert list(cache.iterdir()) == []
