"""Several turns decoded as sequences of one batch, with the real embedded model: each turn's text
as when decoded alone, each ended (and cancelled) on its own."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from llama_agent.runtime.models.backend import (
    BatchingBackend,
    ContextOverflow,
    Generation,
    ModelSettings,
    Turn,
)
from llama_agent.runtime.models.batched import BatchedDecoder
from llama_agent.runtime.models.llama import LlamaModel
from llama_agent.services.models import ModelService


def schema(*keys: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": "string", "maxLength": 40} for key in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


# Four turns unlike one another: prompts of different lengths, different grammars.
TURNS = [
    Turn("Reply with JSON.\n\nUser: What is the capital of France?\nAssistant: ", schema("answer"), 40),
    Turn("Tool calls as JSON.\n\nUser: list the files in src/\nAssistant: ", schema("tool", "path"), 40),
    Turn(
        "Write a title and a summary of a short story about a dragon who bakes bread.\n",
        schema("title", "summary"),
        40,
    ),
    Turn("Q: 17 + 25 = ?\nA (JSON): ", {"type": "object", "properties": {"sum": {"type": "integer"}}}, 40),
]


@pytest.fixture
def decoder(model: LlamaModel) -> Iterator[BatchedDecoder]:
    """A decoder of four sequences holding nothing yet."""
    decoder = BatchedDecoder(model, 4)
    yield decoder
    decoder.close()


def alone(model: LlamaModel, turn: Turn) -> Generation:
    """The turn on the single-sequence path, its prompt evaluated whole, as a fresh sequence's is:
    greedy picks depend on how a prompt was split into batches (llama.cpp's repacked weights
    round batches of 4 tokens and more differently from smaller ones)."""
    model._llm.reset()
    return model.generate(turn)


def test_up_to_three_turns_decoded_together_give_each_the_text_it_has_alone(
    model: LlamaModel, decoder: BatchedDecoder
) -> None:
    singles = [alone(model, turn) for turn in TURNS[1:]]
    together = [future.result(timeout=600) for future in [decoder.submit(turn) for turn in TURNS[1:]]]
    assert decoder is not None and decoder.steps > 0
    # Steps decoded several sequences at once (else nothing was batched).
    assert decoder.stepped_tokens > decoder.steps
    for single, batched in zip(singles, together, strict=True):
        assert batched.text == single.text
        assert batched.stop_reason == single.stop_reason
        assert (batched.prompt_tokens, batched.completion_tokens) == (
            single.prompt_tokens,
            single.completion_tokens,
        )


def test_four_turns_decoded_together_follow_their_schemas(model: LlamaModel, decoder: BatchedDecoder) -> None:
    """From 4 tokens a step llama.cpp's repacked weights take a kernel that rounds differently
    from the one-token kernel: greedy picks may differ on near ties (bench/batched.py counts how
    often), so only the structure is asserted here."""
    together = [future.result(timeout=600) for future in [decoder.submit(turn) for turn in TURNS]]
    for turn, batched in zip(TURNS, together, strict=True):
        assert batched.stop_reason in ("stop", "length")
        if batched.stop_reason == "stop":
            Draft202012Validator(turn.schema).validate(json.loads(batched.text))


def test_one_turn_cancelled_leaves_the_others_as_they_are(model: LlamaModel, decoder: BatchedDecoder) -> None:
    singles = [alone(model, turn) for turn in TURNS[:2]]
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()

    doomed = Turn(TURNS[2].prompt, TURNS[2].schema, 40, on_text=on_text, cancelled=cancel.is_set)
    futures = [decoder.submit(turn) for turn in (TURNS[0], doomed, TURNS[1])]
    results = [future.result(timeout=600) for future in futures]
    assert results[1].stop_reason == "cancelled"
    assert results[1].completion_tokens == 3 and results[1].text == "".join(pieces)
    assert [results[0].text, results[2].text] == [turn.text for turn in singles]


def test_more_turns_than_sequences_wait_for_one_and_errors_stay_with_their_turn(
    model: LlamaModel, decoder: BatchedDecoder
) -> None:
    too_long = Turn("word " * (model.context_size + 10), schema("answer"), 10)
    turns = [*TURNS, TURNS[0], too_long]  # six turns for four sequences
    futures = [decoder.submit(turn) for turn in turns]
    with pytest.raises(ContextOverflow):
        futures[-1].result(timeout=600)
    results = [future.result(timeout=600) for future in futures[:-1]]
    assert results[4].text == results[0].text  # the fifth, started once a sequence was free


def test_a_future_cancelled_before_its_turn_starts_is_never_decoded(
    model: LlamaModel, decoder: BatchedDecoder
) -> None:
    futures = [decoder.submit(turn) for turn in [*TURNS, TURNS[1]]]
    assert futures[-1].cancel()  # still queued: four sequences are busy
    with pytest.raises(CancelledError):
        futures[-1].result(timeout=600)
    assert all(future.result(timeout=600).completion_tokens > 0 for future in futures[:-1])


async def test_the_model_service_runs_four_turns_of_the_local_model_at_once(
    model: LlamaModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With parallel_runs 4 (--max-concurrent-runs 4), four runs hold the model together, each
    turn a sequence of one batch; cancelling one run's turn leaves the others to end as they would."""
    assert model.max_concurrent_runs == 1  # the default: runs take turns
    monkeypatch.setattr(model, "parallel_runs", 4)
    assert isinstance(model, BatchingBackend) and model.max_concurrent_runs == 4
    service = ModelService(ModelSettings(), tmp_path, lambda _settings, _cache: model)
    loaded = await service.model()
    holding = 0
    most = 0
    started = asyncio.Event()

    async def run(turn: Turn) -> Generation:
        nonlocal holding, most
        async with service.exclusive(loaded):
            holding += 1
            most = max(most, holding)
            try:
                return await service.generate(loaded, replace(turn, on_text=lambda _piece: started.set()))
            finally:
                holding -= 1

    tasks = [asyncio.create_task(run(turn)) for turn in TURNS]
    await started.wait()
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 4
    assert isinstance(results[2], asyncio.CancelledError)
    for result in (results[0], results[1], results[3]):
        assert isinstance(result, Generation) and result.stop_reason in ("stop", "length")
