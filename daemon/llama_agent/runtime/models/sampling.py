"""Grammar-constrained sampling that checks the grammar against one token instead of the whole vocabulary.

`Llama.generate(grammar=...)` runs the grammar sampler over every candidate (262k for Gemma 3) before
picking, which costs more than the forward pass of a small model. Like llama.cpp's common sampler, this
picks from the unconstrained logits first and asks the grammar only about that token; the grammar sees
more candidates only when it rejects the pick. Greedy results equal those of `Llama.generate`.

Imports numpy and llama_cpp eagerly: import this module only once a model is needed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

# llama-cpp-python's defaults, which `Llama.generate` applied to our temperature > 0 calls.
TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05
# A rejected pick is usually a near miss (say `"` where the grammar wants a space first), so the tokens
# that matter are usually among the best few hundred; that spares the full-vocabulary pass.
SHORTLIST = 512

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)

Logits = npt.NDArray[np.float32]
Ids = npt.NDArray[np.intc]


def generate_constrained(
    llm: llama_cpp.Llama, grammar_text: str, temperature: float, seed: int
) -> Iterator[int]:
    """Yield tokens that follow the GBNF `grammar_text` (root rule `root`), continuing the prompt
    that `evaluate_prompt` has just evaluated in `llm`.

    Yields the end-of-generation token too; the caller stops there or at its own limit.
    """
    sampler = ConstrainedSampler(llm._model.vocab, llm.n_vocab(), grammar_text, temperature, seed)
    try:
        while True:
            logits: Logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(sampler.n_vocab,))
            token = sampler.next(logits)
            yield token
            llm.eval([token])
    finally:
        sampler.close()


class ConstrainedSampler:
    """One turn's grammar and sampling state: `next` picks a token from the logits that follow
    what it picked before. Decoders of one sequence and of several share it, so both pick alike."""

    def __init__(self, vocab: Any, n_vocab: int, grammar_text: str, temperature: float, seed: int) -> None:
        self._grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar_text.encode("utf-8"), b"root")
        if not self._grammar:
            raise ValueError("llama.cpp rejected the grammar")
        self.n_vocab = n_vocab
        self._temperature = temperature
        self._every_id: Ids = np.arange(n_vocab, dtype=np.intc)
        self._rng = np.random.default_rng(seed)
        # One buffer for all grammar queries: a fresh 3 MB array per rejected pick would be wasted work.
        self._buffer = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._candidates = llama_cpp.llama_token_data_array(
            data=self._buffer.ctypes.data_as(llama_cpp.llama_token_data_p), size=0, selected=-1, sorted=False
        )

    def _constrain(self, ids: Ids, logits: Logits) -> Logits:
        """The logits with every token the grammar rejects at -inf."""
        self._buffer["id"][: len(ids)] = ids
        self._buffer["logit"][: len(ids)] = logits
        self._candidates.size = len(ids)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._candidates))
        return self._buffer["logit"][: len(ids)].copy()

    def _pick(self, ids: Ids, logits: Logits) -> int:
        if self._temperature <= 0:
            return int(ids[np.argmax(logits)])  # first maximum, as llama.cpp's greedy sampler
        return int(ids[_sample(logits, self._temperature, self._rng)])

    def next(self, logits: Logits) -> int:
        """The next token after `logits`, accepted by the grammar."""
        token = self._pick(self._every_id, logits)
        if np.isneginf(self._constrain(np.array([token], dtype=np.intc), logits[[token]]))[0]:
            # Sorted ids keep greedy ties on the lowest id, as over the whole vocabulary.
            shortlist: Ids = np.sort(np.argpartition(logits, -SHORTLIST)[-SHORTLIST:]).astype(np.intc)
            allowed = self._constrain(shortlist, logits[shortlist])
            if _shortlist_suffices(allowed, float(logits[shortlist].min()), self._temperature):
                token = self._pick(shortlist, allowed)
            else:
                allowed = self._constrain(self._every_id, logits)
                if not np.isfinite(allowed).any():
                    raise RuntimeError("the grammar allows no token here")
                token = self._pick(self._every_id, allowed)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


def evaluate_prompt(llm: llama_cpp.Llama, tokens: list[int]) -> int:
    """Reuse the cached prefix the context shares with `tokens` and evaluate the rest, as
    `Llama.generate` does; returns how many tokens were evaluated."""
    if not tokens:
        raise ValueError("generation needs at least one prompt token")
    cached = llm._input_ids
    common = min(len(cached), len(tokens))
    mismatches = np.flatnonzero(cached[:common] != np.asarray(tokens[:common], dtype=np.intc))
    shared = int(mismatches[0]) if mismatches.size else common
    # Evaluate at least one token: the logits left in the context may belong to a different position.
    keep = min(shared, len(tokens) - 1)
    if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        llm.n_tokens = keep
    else:
        llm.reset()  # type: ignore[no-untyped-call]
        keep = 0
    llm.eval(tokens[keep:])
    return len(tokens) - keep


def _shortlist_suffices(allowed: Logits, weakest: float, temperature: float) -> bool:
    """Whether the tokens left out of the shortlist, none scoring above `weakest`, cannot be picked."""
    finite = allowed[np.isfinite(allowed)]
    if finite.size == 0:
        return False
    if temperature <= 0:
        return True
    return finite.size >= TOP_K or weakest < finite.max() + np.log(MIN_P)


def _sample(logits: Logits, temperature: float, rng: np.random.Generator) -> int:
    """Index of a token drawn after min-p, top-k and top-p filtering, at `temperature`."""
    # min-p first (llama.cpp applies it after top-p): then nothing below the min-p floor influences the
    # draw, which is what lets a shortlist of the best logits stand in for the whole vocabulary.
    survivors = np.flatnonzero(logits >= logits.max() + np.log(MIN_P))
    survivors = survivors[np.argsort(-logits[survivors], kind="stable")][:TOP_K]
    kept = logits[survivors].astype(np.float64)
    # top-p sees the untempered distribution, as in llama.cpp; the temperature reshapes the survivors.
    probs = np.exp(kept - kept[0])
    cut = min(int(np.searchsorted(np.cumsum(probs / probs.sum()), TOP_P)) + 1, len(kept))
    weights = np.exp((kept[:cut] - kept[0]) / temperature)
    return int(survivors[rng.choice(cut, p=weights / weights.sum())])
