"""The llama.cpp backend with the real embedded model: loading, templates, constrained generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.runtime.model import LlamaModel, ModelError, ModelSettings, check_gguf, default_model_path

ANSWER_ONLY = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def model(default_model: Path) -> LlamaModel:
    return LlamaModel.load(default_model, ModelSettings(context_size=1024))


def test_the_embedded_model_is_written_once_and_verified(default_model: Path, cache_dir: Path) -> None:
    assert default_model.stat().st_size > 200_000_000
    before = default_model.stat().st_mtime_ns
    assert default_model_path(cache_dir) == default_model
    assert default_model.stat().st_mtime_ns == before  # verified, not rewritten


def test_the_embedded_base_model_has_no_chat_template(model: LlamaModel) -> None:
    assert model.chat_template is None


def test_generation_follows_the_schema_and_is_deterministic(model: LlamaModel) -> None:
    prompt = "Reply with JSON.\n\nUser: What is the capital of France?\nAssistant: "
    streamed: list[str] = []
    first = model.generate(
        prompt, ANSWER_ONLY, max_tokens=64, temperature=0.0, seed=3, on_text=streamed.append
    )
    second = model.generate(prompt, ANSWER_ONLY, max_tokens=64, temperature=0.0, seed=3)
    assert first.stop_reason == "stop"
    assert isinstance(json.loads(first.text)["answer"], str)
    assert "".join(streamed) == first.text
    assert second.text == first.text
    assert first.prompt_tokens == model.count_tokens(prompt)
    assert 0 < first.completion_tokens <= 64


def test_generation_stops_at_max_tokens_and_on_cancel(model: LlamaModel) -> None:
    prompt = "User: Count from 1 to 500, separated by commas.\nAssistant: "
    cut = model.generate(prompt, ANSWER_ONLY, max_tokens=5, temperature=0.0, seed=0)
    assert (cut.stop_reason, cut.completion_tokens) == ("length", 5)
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    stopped = model.generate(
        prompt, ANSWER_ONLY, max_tokens=500, temperature=0.0, seed=0, cancelled=cancelled
    )
    assert (stopped.stop_reason, stopped.completion_tokens) == ("cancelled", 3)


def test_a_chat_template_in_the_gguf_is_used(templated_model: Path) -> None:
    model = LlamaModel.load(templated_model, ModelSettings(context_size=1024))
    assert model.chat_template is not None
    prompt = model.format_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert prompt == (
        "<bos><start_of_turn>user\nhi<end_of_turn>\n"
        "<start_of_turn>model\nhello<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    # The template writes BOS itself: it must not be doubled.
    assert model.count_tokens(prompt) == model.count_tokens(prompt.removeprefix("<bos>"))


@pytest.mark.parametrize(("content", "fragment"), [(None, "not found"), (b"GGUX", "not a GGUF")])
def test_bad_model_files_are_named_in_the_error(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=fragment):
        check_gguf(path)
    with pytest.raises(ModelError, match=str(path)):
        LlamaModel.load(path, ModelSettings())
