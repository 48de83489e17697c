"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.runtime.models.llama import LlamaModel


@pytest.fixture(scope="module")
def model(default_model: Path) -> LlamaModel:
    """The embedded model, loaded in process with a 1024-token context: once per test module
    that asks for it (the modules that do test the llama.cpp backend and its grammars)."""
    return LlamaModel.load(default_model, ModelSettings(context_size=1024))
