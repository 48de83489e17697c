"""The sampler's pure parts: when a shortlist of candidates can stand in for the whole vocabulary,
and the temperature draw (min-p, then top-k, then top-p, as llama.cpp orders them)."""

from __future__ import annotations

import numpy as np
import pytest
from llama_agent.runtime.models.sampling import MIN_P, TOP_K, _sample, _shortlist_suffices

NEG_INF = -np.inf


def logits(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_greedy_needs_only_one_allowed_candidate() -> None:
    assert _shortlist_suffices(logits(NEG_INF, 1.0, NEG_INF), weakest=0.5, temperature=0.0)


def test_a_shortlist_the_grammar_rejects_entirely_does_not_suffice() -> None:
    for temperature in (0.0, 0.8):
        assert not _shortlist_suffices(logits(NEG_INF, NEG_INF), weakest=0.0, temperature=temperature)


def test_sampling_suffices_with_top_k_allowed_candidates() -> None:
    allowed = np.full(TOP_K, 1.0, dtype=np.float32)
    assert _shortlist_suffices(allowed, weakest=1.0, temperature=0.8)
    assert not _shortlist_suffices(allowed[: TOP_K - 1], weakest=1.0, temperature=0.8)


def test_sampling_suffices_when_everything_left_out_is_below_the_min_p_floor() -> None:
    best = 5.0
    floor = best + float(np.log(MIN_P))
    allowed = logits(best, NEG_INF)
    assert _shortlist_suffices(allowed, weakest=floor - 0.01, temperature=0.8)
    # A token left out of the shortlist might score just under `weakest`: above the floor, it could be drawn.
    assert not _shortlist_suffices(allowed, weakest=floor + 0.01, temperature=0.8)


def test_a_draw_never_picks_a_token_below_the_min_p_floor() -> None:
    rng = np.random.default_rng(0)
    values = logits(10.0, 9.5, 10.0 + float(np.log(MIN_P)) - 0.1, 0.0)
    picks = {_sample(values, 1.0, rng) for _ in range(500)}
    assert picks == {0, 1}


def test_a_draw_keeps_only_the_top_k() -> None:
    rng = np.random.default_rng(1)
    values = np.linspace(1.0, 1.1, TOP_K + 20).astype(np.float32)  # all within min-p of each other
    picks = {_sample(values, 50.0, rng) for _ in range(3000)}
    best_k = set(np.argsort(-values)[:TOP_K].tolist())
    assert picks <= best_k
    assert len(picks) > TOP_K // 2  # and a high temperature really spreads over them


def test_top_p_cuts_the_long_tail() -> None:
    rng = np.random.default_rng(2)
    # The runner-up clears the min-p floor (5% of the best) but the best holds over 95% of the
    # mass: top-p (0.95) keeps the best alone. Without top-p the runner-up would come up ~5% of draws.
    values = logits(10.0, 10.0 - 2.994)
    assert {_sample(values, 1.0, rng) for _ in range(300)} == {0}


def test_a_low_temperature_favours_the_best_token() -> None:
    values = logits(1.0, 0.9)
    cold = [_sample(values, 0.05, np.random.default_rng(seed)) for seed in range(200)]
    warm = [_sample(values, 1.0, np.random.default_rng(seed)) for seed in range(200)]
    # P(best) = 1 / (1 + e^(-0.1 / T)): 0.88 at T = 0.05, 0.52 at T = 1.
    assert cold.count(0) > 160
    assert warm.count(0) < 130


@pytest.mark.parametrize("seed", [0, 7])
def test_the_same_seed_draws_the_same_tokens(seed: int) -> None:
    values = np.linspace(0.0, 1.0, 50).astype(np.float32)
    first = [_sample(values, 1.0, np.random.default_rng(seed)) for _ in range(20)]
    second = [_sample(values, 1.0, np.random.default_rng(seed)) for _ in range(20)]
    assert first == second
