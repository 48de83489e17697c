"""The llama.cpp backend with the real embedded model: loading, templates, constrained generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from llama_agent.runtime.models.backend import ContextOverflow, ModelError, ModelSettings, Turn
from llama_agent.runtime.models.llama import LlamaModel, check_gguf, default_model_path


def answer_schema(**string_bounds: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"answer": {"type": "string", **string_bounds}},
        "required": ["answer"],
        "additionalProperties": False,
    }


# A turn the grammar bounds: at most 30 characters (each at most a 6-character escape) in the string,
# so generation must end, whatever the model prefers to say, well within 300 tokens.
BOUNDED = answer_schema(maxLength=30)
QUESTION = "Reply with JSON.\n\nUser: What is the capital of France?\nAssistant: "


@pytest.fixture(scope="module")
def longest_token(model: LlamaModel) -> int:
    """Characters in the vocabulary's longest token: no token can write more than this at once."""
    llm = model._llm
    return max(len(llm.detokenize([token], special=False)) for token in range(llm.n_vocab()))


def test_the_embedded_model_is_written_once_and_verified(default_model: Path, cache_dir: Path) -> None:
    assert default_model.stat().st_size > 200_000_000
    before = default_model.stat().st_mtime_ns
    assert default_model_path(cache_dir) == default_model
    assert default_model.stat().st_mtime_ns == before  # verified, not rewritten


def test_the_embedded_base_model_has_no_chat_template(model: LlamaModel) -> None:
    assert model.chat_template is None


def test_generation_follows_the_schema_and_streams_what_it_returns(model: LlamaModel) -> None:
    streamed: list[str] = []
    turn = model.generate(
        Turn(QUESTION, BOUNDED, max_tokens=300, temperature=0.0, seed=3, on_text=streamed.append)
    )
    assert turn.stop_reason == "stop"
    Draft202012Validator(BOUNDED).validate(json.loads(turn.text))
    assert "".join(streamed) == turn.text
    assert turn.prompt_tokens == model.count_tokens(QUESTION)
    assert 0 < turn.completion_tokens <= 300


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_the_same_machine_gives_the_same_output_twice(default_model: Path, temperature: float) -> None:
    """Two fresh contexts, same prompt, settings and seed: the same tokens."""
    fresh = [LlamaModel.load(default_model, ModelSettings(context_size=1024)) for _ in range(2)]
    turns = [
        m.generate(Turn(QUESTION, BOUNDED, max_tokens=300, temperature=temperature, seed=11)) for m in fresh
    ]
    assert turns[0].text == turns[1].text
    assert turns[0].completion_tokens == turns[1].completion_tokens


def test_generation_stops_at_max_tokens_and_on_cancel(model: LlamaModel, longest_token: int) -> None:
    # The string must be longer than any five tokens can write: the turn cannot end early.
    unending = answer_schema(minLength=5 * longest_token + 1)
    prompt = "User: Count from 1 to 500, separated by commas.\nAssistant: "
    cut = model.generate(Turn(prompt, unending, max_tokens=5, temperature=0.0, seed=0))
    assert (cut.stop_reason, cut.completion_tokens) == ("length", 5)
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    stopped = model.generate(
        Turn(prompt, unending, max_tokens=500, temperature=0.0, seed=0, cancelled=cancelled)
    )
    assert (stopped.stop_reason, stopped.completion_tokens) == ("cancelled", 3)


def test_a_turn_ends_after_the_piece_its_stop_when_refuses(model: LlamaModel, longest_token: int) -> None:
    """`stop_when` sees each piece after `on_text` has: the turn ends there, that piece its last."""
    unending = answer_schema(minLength=5 * longest_token + 1)
    prompt = "User: Count from 1 to 500, separated by commas.\nAssistant: "
    streamed: list[str] = []
    seen: list[str] = []

    def second_piece(piece: str) -> bool:
        seen.append(piece)
        return len(seen) == 2

    stopped = model.generate(Turn(prompt, unending, 500, on_text=streamed.append, stop_when=second_piece))
    assert stopped.stop_reason == "cancelled"
    assert streamed == seen and len(seen) == 2
    assert stopped.text == "".join(seen)


def test_a_prompt_longer_than_the_context_is_refused(model: LlamaModel) -> None:
    with pytest.raises(ContextOverflow, match="does not fit the model's context") as raised:
        model.generate(Turn("word " * 2000, BOUNDED, max_tokens=10, temperature=0.0, seed=0))
    assert raised.value.context_size == 1024
    assert raised.value.prompt_tokens > 1024


def test_a_context_size_llama_cpp_pads_is_still_respected(default_model: Path) -> None:
    """llama.cpp rounds 128 up to 256, but only 128 tokens fit llama-cpp-python's buffer."""
    small = LlamaModel.load(default_model, ModelSettings(context_size=128))
    assert small.context_size == 128
    prompt = "word " * 110
    turn = small.generate(Turn(prompt, BOUNDED, max_tokens=300, temperature=0.0, seed=0))
    assert turn.prompt_tokens + turn.completion_tokens <= 128
    with pytest.raises(ContextOverflow):
        small.generate(Turn("word " * 130, BOUNDED, max_tokens=10, temperature=0.0, seed=0))


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


def test_log_likelihoods_match_a_plain_evaluation_and_survive_other_prefixes(
    model: LlamaModel, default_model: Path
) -> None:
    """The router's scores are log P(continuation | prefix + option): checked against llama-cpp-python
    evaluating the whole text with every position's logits, and unchanged by the prefix cache."""
    import numpy as np
    from llama_cpp import Llama

    prefix, options, continuation = (
        "Tool: calc\nRequest: What is 2 + 2?\n\n",
        ["Tool: calc\nRequest:", "Tool: echo\nRequest:"],
        " What is 3 + 5?\n",
    )
    scores = model.log_likelihoods(prefix, options, continuation)
    plain = Llama(model_path=str(default_model), n_ctx=256, logits_all=True, verbose=False)
    for option, score in zip(options, scores, strict=True):
        head = plain.tokenize(prefix.encode(), add_bos=True, special=True)
        head += plain.tokenize(option.encode(), add_bos=False, special=False)
        tail = plain.tokenize(continuation.encode(), add_bos=False, special=False)
        plain.reset()  # type: ignore[no-untyped-call]
        plain.eval(head + tail)
        rows = np.asarray(plain.scores[len(head) - 1 : len(head) + len(tail) - 1], dtype=np.float64)
        peak = rows.max(axis=1, keepdims=True)
        log_probs = rows - peak - np.log(np.exp(rows - peak).sum(axis=1, keepdims=True))
        expected = float(sum(log_probs[i, token] for i, token in enumerate(tail)))
        # Rows round apart by where they fall in a batch (test_batched_scoring.py): a little.
        assert score == pytest.approx(expected, abs=0.3)
    assert scores[0] != scores[1]
    # Another prefix in between, then the first again: the cache must not leak across prefixes.
    model.log_likelihoods("Tool: echo\nRequest: Say hi\n\n", options, continuation)
    assert model.log_likelihoods(prefix, options, continuation) == pytest.approx(scores, abs=1e-3)


def test_a_context_after_the_prefix_scores_as_if_it_were_part_of_it(model: LlamaModel) -> None:
    """A conversation's last requests go after the kept prefix, evaluated for this call only:
    the scores are those of the prefix and the context as one text, and a later call without
    it gets the prefix's own scores back."""
    prefix = "Tool: calc\nRequest: What is 2 + 2?\n\n"
    context = "Tool: echo\nRequest: Say hello\n\n"
    options, continuation = ["Tool: calc\nRequest:", "Tool: echo\nRequest:"], " Say goodbye\n"
    alone = model.log_likelihoods(prefix, options, continuation)
    with_context = model.log_likelihoods(prefix, options, continuation, context)
    assert with_context == pytest.approx(
        model.log_likelihoods(prefix + context, options, continuation), abs=1e-3
    )
    assert with_context != pytest.approx(alone, abs=1e-3)
    assert model.log_likelihoods(prefix, options, continuation) == pytest.approx(alone, abs=1e-3)


def test_scoring_leaves_the_generation_context_as_it_was(model: LlamaModel) -> None:
    """The generation context's cached tokens and KV cells are untouched by scoring (checked
    directly: comparing generated text would also compare batch splits, which may round apart)."""
    import llama_cpp

    def held() -> tuple[list[int], int]:
        llm = model._llm
        memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
        return list(llm.input_ids[: llm.n_tokens]), llama_cpp.llama_memory_seq_pos_max(memory, 0)

    model.generate(Turn("User: Say yes.\nAssistant: ", answer_schema(), 12, 0.0, 0))
    before = held()
    assert before[1] >= len(before[0]) - 1 > 0
    model.log_likelihoods("Something else entirely.\n", ["A:"], " yes")
    assert held() == before


def test_scoring_refuses_what_it_cannot_score(model: LlamaModel) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        model.log_likelihoods("prefix", [""], " x")
    with pytest.raises(ValueError, match="does not fit"):
        model.log_likelihoods("word " * 3000, ["A:"], " x")


def test_a_shared_prompt_start_is_kept_on_disk_and_read_back_by_the_next_process(
    default_model: Path, tmp_path: Path
) -> None:
    settings = ModelSettings(context_size=1024)
    prefix = "Instructions that every prompt of this tool set starts with. " * 12 + "\n"
    prompt = prefix + "User: Say yes.\nAssistant: "
    # The reference evaluates the prefix, then the rest, as a restored prefix is followed: the
    # same batches, so any CPU must give the same text from a restored state.
    first = LlamaModel.load(default_model, settings, tmp_path)
    evaluated = first.generate(Turn(prompt, answer_schema(), 12, 0.0, 0, cache_prefixes=(prefix,)))
    plain = evaluated.text
    assert evaluated.cached_tokens == 0
    states = sorted((tmp_path / "prompts").glob("*.state"))
    assert len(states) == 1 and first._states is not None and first._states.written == 1

    second = LlamaModel.load(default_model, settings, tmp_path)
    restored = second.generate(Turn(prompt, answer_schema(), 12, 0.0, 0, cache_prefixes=(prefix,)))
    assert restored.text == plain
    assert second._states is not None and (second._states.restored, second._states.written) == (1, 0)
    assert restored.cached_tokens == second.count_tokens(prefix)  # read back, not evaluated

    # A state that does not verify is never used: evaluated afresh, written again.
    data = bytearray(states[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    states[0].write_bytes(bytes(data))
    third = LlamaModel.load(default_model, settings, tmp_path)
    assert third.generate(Turn(prompt, answer_schema(), 12, 0.0, 0, cache_prefixes=(prefix,))).text == plain
    assert third._states is not None and (third._states.restored, third._states.written) == (0, 1)

    # Another context size is another identity: its own file.
    other = LlamaModel.load(default_model, ModelSettings(context_size=2048), tmp_path)
    other.generate(Turn(prompt, answer_schema(), 12, 0.0, 0, cache_prefixes=(prefix,)))
    assert len(list((tmp_path / "prompts").glob("*.state"))) == 2


def test_a_generation_reports_what_it_reused_and_when_its_first_token_came(model: LlamaModel) -> None:
    prompt = "User: Say yes, then no.\nAssistant: "
    model.generate(Turn("Something else entirely.\n", answer_schema(), 4, 0.0, 0))
    first = model.generate(Turn(prompt, answer_schema(), 12, 0.0, 0))
    assert first.cached_tokens < first.prompt_tokens
    assert 0 < first.first_token_seconds <= first.seconds
    again = model.generate(Turn(prompt, answer_schema(), 12, 0.0, 0))
    # Held in the context but for the last token, evaluated again for its logits.
    assert again.cached_tokens == again.prompt_tokens - 1


def test_a_longer_start_not_on_disk_is_evaluated_on_top_of_a_shorter_one(
    default_model: Path, tmp_path: Path
) -> None:
    settings = ModelSettings(context_size=1024)
    shared = "Instructions that every prompt of this tool set starts with. " * 12 + "\n"
    starts = [shared + f"Examples for the {tool} tool, in order. " * 4 + "\n" for tool in ("echo", "calc")]
    prompts = [start + "User: Say yes.\nAssistant: " for start in starts]
    model = LlamaModel.load(default_model, settings, tmp_path)
    first = model.generate(Turn(prompts[0], answer_schema(), 4, 0.0, 0, cache_prefixes=(shared, starts[0])))
    assert first.cached_tokens == 0
    assert model._states is not None and model._states.written == 2  # both starts kept
    # Another start, in the same context: the shared part is held, not evaluated again.
    second = model.generate(Turn(prompts[1], answer_schema(), 4, 0.0, 0, cache_prefixes=(shared, starts[1])))
    assert second.cached_tokens >= model.count_tokens(shared) - 1

    # In another process: the echo start is read back whole; the calc one is not on disk
    # any more, so it is evaluated on top of the shared part, which is.
    (tmp_path / "prompts" / model._states._path(model._tokenize(starts[1])).name).unlink()
    later = LlamaModel.load(default_model, settings, tmp_path)
    again = later.generate(Turn(prompts[0], answer_schema(), 4, 0.0, 0, cache_prefixes=(shared, starts[0])))
    assert again.cached_tokens == later.count_tokens(starts[0])
    other = LlamaModel.load(default_model, settings, tmp_path)
    calc = other.generate(Turn(prompts[1], answer_schema(), 4, 0.0, 0, cache_prefixes=(shared, starts[1])))
    assert calc.cached_tokens == other.count_tokens(shared)
    assert other._states is not None and (other._states.restored, other._states.written) == (1, 1)


def test_a_cache_prefix_the_prompt_does_not_start_with_is_ignored(
    default_model: Path, tmp_path: Path
) -> None:
    model = LlamaModel.load(default_model, ModelSettings(context_size=1024), tmp_path)
    model.generate(
        Turn(
            "User: Say yes.\nAssistant: ",
            answer_schema(),
            4,
            0.0,
            0,
            cache_prefixes=("Something else " * 50,),
        )
    )
    assert not (tmp_path / "prompts").exists()


def test_with_many_options_only_the_likeliest_are_scored_in_full(model: LlamaModel) -> None:
    from llama_agent.runtime.models.scoring import FINALISTS

    prefix = "Tool: calc\nRequest: What is 2 + 2?\n\nTool: echo\nRequest: Say hi back\n\n"
    options = [f"Tool: {name}\nRequest:" for name in ("calc", "echo", "print", "clock", "files")]
    continuation = " What is 12 times 7, and what is 3 plus 4 then?\n"
    alone = [model.log_likelihoods(prefix, [option], continuation)[0] for option in options]
    model.log_likelihoods(prefix, options, " Something else.\n")  # nothing kept from those
    scores = model.log_likelihoods(prefix, options, continuation)
    finalists = [i for i, score in enumerate(scores) if score != float("-inf")]
    assert len(finalists) == FINALISTS
    for i in finalists:  # scored in full (in one batch): as when scored alone, but for rounding
        assert scores[i] == pytest.approx(alone[i], abs=1.0)
    # Asked again for a finalist beside a pruned option: the finalist's score as it was.
    pruned = next(i for i, score in enumerate(scores) if score == float("-inf"))
    again = model.log_likelihoods(prefix, [options[finalists[0]], options[pruned]], continuation)
    assert again[0] == scores[finalists[0]] and again[1] == pytest.approx(alone[pruned], abs=1.0)
