"""Several runs at once on the local model: decode tokens/s with 4 turns in flight, as sequences of
one batch (runtime/models/batched.py), against one turn alone, side by side in one process; and
whether each turn's text is the one it has alone (greedy).

    .venv/bin/python -m bench.batched        (a section of `make bench`)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from typing import Any

from llama_agent.runtime.models.backend import Generation, ModelSettings, Turn
from llama_agent.runtime.models.batched import BatchedDecoder
from llama_agent.runtime.models.llama import LlamaModel, default_model_path, default_threads

from bench.common import BENCH_CACHE_DIR

IN_FLIGHT = 4
TOKENS = 48  # each turn's length: the grammar lets every turn run that far
ROUNDS = 3


def _schema(*keys: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": "string", "maxLength": 400} for key in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


PROMPTS = [
    ("Reply with JSON.\n\nUser: Explain what a compiler does.\nAssistant: ", _schema("answer")),
    (
        "Tool calls as JSON.\n\nUser: find every TODO in the src folder and list them\nAssistant: ",
        _schema("tool", "pattern"),
    ),
    (
        "Write a title and a summary of a short story about a dragon who bakes bread.\n",
        _schema("title", "summary"),
    ),
    ("User: describe the weather in Paris in spring, in detail.\nAssistant (JSON): ", _schema("description")),
]
TURNS = [Turn(prompt, schema, TOKENS) for prompt, schema in PROMPTS]


def _alone(model: LlamaModel, turn: Turn) -> Generation:
    """The single-sequence path, its prompt evaluated whole (as a fresh sequence's is)."""
    model._llm.reset()
    return model.generate(turn)


def _first_difference(a: str, b: str) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _decoded(model: LlamaModel, turns: list[Turn]) -> tuple[list[Generation], float, float]:
    """The turns in flight together in a fresh decoder (prompts evaluated whole): their
    generations, decode tokens/s (steps only, not prompts), and tokens a step."""
    decoder = BatchedDecoder(model, IN_FLIGHT)
    try:
        generations = [future.result() for future in [decoder.submit(turn) for turn in turns]]
        rate = sum(g.completion_tokens for g in generations) / decoder.step_seconds
        return generations, rate, decoder.stepped_tokens / decoder.steps
    finally:
        decoder.close()


def measure(model: LlamaModel) -> dict[str, Any]:
    """Per round: each turn alone (one in flight), then all together, in the same decoder
    thread; and the single-sequence path's texts, for identity."""
    alone_rates: list[float] = []
    together_rates: list[float] = []
    single_rates: list[float] = []
    differing: list[dict[str, Any]] = []
    compared = 0
    per_step = 0.0
    _decoded(model, TURNS[:1])  # the weights paged in, the grammars compiled: not measured
    for _ in range(ROUNDS):
        alone = [_decoded(model, [turn]) for turn in TURNS[:IN_FLIGHT]]
        seconds = sum(g[0][0].completion_tokens / g[1] for g in alone)
        alone_rates.append(sum(g[0][0].completion_tokens for g in alone) / seconds)
        together, rate, per_step = _decoded(model, TURNS[:IN_FLIGHT])
        together_rates.append(rate)
        singles = [_alone(model, turn) for turn in TURNS[:IN_FLIGHT]]
        single_seconds = sum(g.seconds - g.first_token_seconds for g in singles)
        single_rates.append(sum(g.completion_tokens for g in singles) / single_seconds)
        for turn, single, batched in zip(TURNS, singles, together, strict=False):
            compared += 1
            at = _first_difference(single.text, batched.text)
            if at is not None:
                differing.append(
                    {
                        "prompt": str(turn.prompt)[:40],
                        "at_char": at,
                        "alone": single.text,
                        "batched": batched.text,
                    }
                )
    return {
        "in_flight": IN_FLIGHT,
        "tokens_per_turn": TOKENS,
        "alone_tokens_per_s": statistics.median(alone_rates),
        "together_tokens_per_s": statistics.median(together_rates),
        "single_path_tokens_per_s": statistics.median(single_rates),
        "ratio": statistics.median(together_rates) / statistics.median(alone_rates),
        "tokens_per_step": per_step,
        "turns_compared": compared,
        "turns_identical": compared - len(differing),
        "differing": differing,
    }


async def run() -> dict[str, Any]:
    path = default_model_path(BENCH_CACHE_DIR)
    model = LlamaModel.load(path, ModelSettings(context_size=1024, threads=default_threads()))
    return await asyncio.to_thread(measure, model)


def markdown(results: dict[str, Any]) -> list[str]:
    return [
        f"| one turn alone | {results['alone_tokens_per_s']:.1f} tokens/s | 1.00x |",
        f"| one turn alone, single-sequence path | {results['single_path_tokens_per_s']:.1f} tokens/s | |",
        f"| {results['in_flight']} turns in flight, one batch a step | "
        f"{results['together_tokens_per_s']:.1f} tokens/s | {results['ratio']:.2f}x |",
        "",
        f"- Goal ≥ 2.5x: {'met' if results['ratio'] >= 2.5 else 'not met'} "
        f"({results['tokens_per_step']:.2f} tokens a step on average).",
        f"- Greedy text as alone: {results['turns_identical']} of {results['turns_compared']} turns "
        "(llama.cpp's repacked weights round batches of 4 tokens or more differently from smaller "
        "ones, so near ties may flip).",
    ]


if __name__ == "__main__":
    results = asyncio.run(run())
    json.dump(results, sys.stdout, indent=2)
    print("\n" + "\n".join(markdown(results)))
