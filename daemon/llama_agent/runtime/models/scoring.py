"""Log-likelihoods of a continuation after a prefix and each of several options, on llama.cpp.

The agent's tool router asks how likely the user's request is after "Tool: NAME", for each
tool (a noisy-channel classifier: a small model is far better at that than at naming the tool
itself). A second context over the same loaded weights does the scoring, so that the generation
context keeps its cached prompt; its prefix stays cached between requests.

The options share everything but their tail, so the prefix is evaluated once, in sequence 0 of
a KV cache that all sequences share, and the options are scored as sequences of one batch, each
seeing the prefix's cells (copied by reference, not by value): one pass over the weights for all
of them instead of one an option. Their scores equal those of scoring them one after another up
to float rounding (tests/unit/test_batched_scoring.py).

Imports numpy and llama_cpp eagerly: import this module only once a model is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp._internals import LlamaContext

from llama_agent.runtime.models.prompt_states import PromptStates

# The prefix (few-shot requests) and one option with the continuation must fit; more options
# than fit beside the prefix at once are scored in several batches.
SCORING_CONTEXT = 2048
# Sequences in the scoring context: the prefix's, and one an option scored in the same batch.
# More options than that are scored in several batches.
SEQUENCES = 16
PREFIX_SEQUENCE = 0
# With more options than FINALISTS, all are scored on the continuation's first PRUNE_AFTER tokens
# and only the FINALISTS likeliest on the whole of it; the others get -inf. The router's shortlist
# (three tools and "none", services/agent/routing.py) is scored in full.
PRUNE_AFTER = 6
FINALISTS = 4


@dataclass
class _Entry:
    """One token of a batch; `target`: for a wanted row, the token it predicts, and whose score."""

    token: int
    position: int
    sequence: int
    wanted: bool = False
    target: int = -1
    option: int = -1


# Called with a wanted entry and its logits (a view into llama.cpp's buffer, valid during the call).
RowHandler = Callable[[_Entry, npt.NDArray[np.float32]], None]


class ScoringContext:
    """A llama.cpp context over the weights a `llama_cpp.Llama` has loaded (no second copy, no
    second load), with several sequences in one KV cache. Sequence 0 offers the part of `Llama`'s
    interface that prompt states and `evaluate_prompt` use: `input_ids`, `n_tokens`, `reset`,
    `eval` and `_ctx`."""

    def __init__(self, llm: llama_cpp.Llama, context_size: int, sequences: int = SEQUENCES) -> None:
        if sequences < 2:
            raise ValueError("scoring needs the prefix's sequence and at least one more")
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = context_size
        params.n_batch = min(int(params.n_batch), context_size)
        params.n_ubatch = min(int(params.n_ubatch), int(params.n_batch))
        params.n_seq_max = sequences
        # One cache for every sequence: the prefix's cells are shared, not copied, and each
        # sequence may use the whole context (split caches would give each 1/sequences of it).
        params.kv_unified = True
        params.embeddings = False
        self._llm = llm
        # Closed by the model before the model is freed (llama-cpp-python sees to that).
        self._ctx = LlamaContext(model=llm._model, params=params, verbose=False)
        self.memory: llama_cpp.llama_memory_t = llama_cpp.llama_get_memory(self._ctx.ctx)
        self.sequences = sequences
        self.n_batch = int(params.n_batch)
        self.input_ids: npt.NDArray[np.intc] = np.zeros(context_size, dtype=np.intc)
        self.n_tokens = 0

    def n_ctx(self) -> int:
        return int(self._ctx.n_ctx())

    def n_vocab(self) -> int:
        return int(self._llm.n_vocab())

    @property
    def _input_ids(self) -> npt.NDArray[np.intc]:
        return self.input_ids[: self.n_tokens]

    def reset(self) -> None:
        """Forget what sequence 0 holds (its cells are dropped by the next `eval`), as `Llama`."""
        self.n_tokens = 0

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate `tokens` after the first `n_tokens` of sequence 0, dropping every other cell
        from there on."""
        llama_cpp.llama_memory_seq_rm(self.memory, -1, self.n_tokens, -1)
        if not tokens:
            return
        entries = [_Entry(token, self.n_tokens + i, PREFIX_SEQUENCE) for i, token in enumerate(tokens)]
        entries[-1].wanted = True  # llama.cpp wants at least one output a batch
        self.decode(entries, lambda _entry, _row: None)
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)

    def decode(self, entries: Sequence[_Entry], on_row: RowHandler) -> None:
        """Evaluate the entries in batches of at most n_batch, in order, calling `on_row` with each
        wanted entry's logits (a view, valid during the call only)."""
        n_vocab = self.n_vocab()
        batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        try:
            for first in range(0, len(entries), self.n_batch):
                chunk = entries[first : first + self.n_batch]
                batch.n_tokens = len(chunk)
                for i, entry in enumerate(chunk):
                    batch.token[i] = entry.token
                    batch.pos[i] = entry.position
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = entry.sequence
                    batch.logits[i] = entry.wanted
                if llama_cpp.llama_decode(self._ctx.ctx, batch) != 0:
                    raise RuntimeError("llama.cpp could not evaluate the scoring batch")
                for i, entry in enumerate(chunk):
                    if entry.wanted:
                        pointer = llama_cpp.llama_get_logits_ith(self._ctx.ctx, i)
                        on_row(entry, np.ctypeslib.as_array(pointer, shape=(n_vocab,)))
        finally:
            llama_cpp.llama_batch_free(batch)


class PrefixScorer:
    """Keeps a prefix evaluated in a `ScoringContext` and scores continuations after it."""

    def __init__(self, context: ScoringContext, states: PromptStates | None = None) -> None:
        self._window = context
        self._states = states  # None: the prefix is evaluated in every new process
        self._prefix: list[int] = []
        self._context: list[int] = []  # evaluated after the prefix
        # Scores known for the last prefix, context and continuation, on its first PRUNE_AFTER
        # tokens and on all: the router asks again for a finalist beside an option it pruned.
        self._heads: dict[tuple[int, ...], float] = {}
        self._full: dict[tuple[int, ...], float] = {}
        self._known_for: tuple[int, ...] = ()

    @property
    def context_size(self) -> int:
        return self._window.n_ctx()

    def log_likelihoods(
        self,
        prefix: list[int],
        options: Sequence[list[int]],
        continuation: list[int],
        context: Sequence[int] = (),
    ) -> list[float]:
        """For each option, log P(continuation | prefix + context + option), summed over its tokens;
        -inf for an option pruned after the continuation's first tokens (see FINALISTS). The
        prefix is kept evaluated (on disk too); the context, one request's own, only in memory."""
        if any(not option for option in options):
            raise ValueError("every option needs at least one token")
        longest = max((len(option) for option in options), default=0)
        if len(prefix) + len(context) + longest + len(continuation) > self.context_size:
            raise ValueError("the scoring prompt does not fit the scoring context")
        if not continuation:
            return [0.0] * len(options)
        self._keep_prefix(prefix)
        self._keep_context(list(context))
        self._forget_unless(continuation)
        if len(options) <= FINALISTS or len(continuation) <= PRUNE_AFTER:
            finalists = list(options)
        else:
            # Most of the cost is the output layer, once per scored token (262k rows for Gemma 3):
            # every option is scored on the continuation's first tokens, the likeliest on all.
            heads = self._heads_of(options, continuation)
            ranked = sorted(range(len(options)), key=lambda i: -heads[i])[:FINALISTS]
            finalists = [options[i] for i in sorted(ranked)]
        self._score_in_full(finalists, continuation)
        return [self._full.get(tuple(option), float("-inf")) for option in options]

    def _forget_unless(self, continuation: list[int]) -> None:
        """Keep the scores known only while the prefix, context and continuation stay the same."""
        key = (*self._prefix, -1, *self._context, -1, *continuation)
        if key != self._known_for:
            self._heads, self._full, self._known_for = {}, {}, key

    def _heads_of(self, options: Sequence[list[int]], continuation: list[int]) -> list[float]:
        missing = _distinct(option for option in options if tuple(option) not in self._heads)
        sums = self._sums(missing, continuation, 0, PRUNE_AFTER)
        self._heads.update({tuple(option): total for option, total in zip(missing, sums, strict=True)})
        return [self._heads[tuple(option)] for option in options]

    def _score_in_full(self, options: Sequence[list[int]], continuation: list[int]) -> None:
        """Have every option's whole-continuation score known: the rest of the continuation for
        those whose head is known, all of it for the others."""
        missing = _distinct(option for option in options if tuple(option) not in self._full)
        headed = [option for option in missing if tuple(option) in self._heads]
        whole = [option for option in missing if tuple(option) not in self._heads]
        tails = self._sums(headed, continuation, PRUNE_AFTER, len(continuation))
        for option, tail in zip(headed, tails, strict=True):
            self._full[tuple(option)] = self._heads[tuple(option)] + tail
        sums = self._sums(whole, continuation, 0, len(continuation))
        self._full.update({tuple(option): total for option, total in zip(whole, sums, strict=True)})

    def _keep_prefix(self, prefix: list[int]) -> None:
        if prefix == self._prefix:
            return
        self._prefix = []
        self._context = []
        window = self._window
        if self._states is not None:
            self._states.evaluate(window, prefix)
        else:
            window.reset()
            window.eval(prefix)
        self._prefix = list(prefix)

    def _keep_context(self, context: list[int]) -> None:
        if context == self._context:
            return
        window = self._window
        window.n_tokens = len(self._prefix)  # the next eval drops every cell after the prefix
        self._context = []
        if context:
            window.eval(context)
        else:
            llama_cpp.llama_memory_seq_rm(window.memory, -1, window.n_tokens, -1)
        self._context = context

    def _sums(
        self, options: Sequence[list[int]], continuation: list[int], low: int, high: int
    ) -> list[float]:
        """For each option, the sum over j in [low, high) of log P(continuation[j] | prefix,
        context, option, continuation[:j]): options as sequences of one batch, as many at once
        as the context holds."""
        sums = [0.0] * len(options)
        start = len(self._prefix) + len(self._context)
        group: list[tuple[int, list[int]]] = []
        room = self.context_size - start
        for index, option in enumerate(options):
            # Evaluated for an option: it and the continuation up to the last token predicted.
            size = len(option) + high - 1
            full = len(group) + 1 >= self._window.sequences
            if group and (full or sum(len(o) + high - 1 for _, o in group) + size > room):
                self._score_group(group, continuation, low, high, sums)
                group = []
            group.append((index, option))
        if group:
            self._score_group(group, continuation, low, high, sums)
        return sums

    def _score_group(
        self,
        group: Sequence[tuple[int, list[int]]],
        continuation: list[int],
        low: int,
        high: int,
        sums: list[float],
    ) -> None:
        rows: list[_Row] = []
        for index, option in group:
            tokens = option + continuation[: high - 1]
            # Row i predicts tokens[i + 1]: continuation[j] is predicted by the row of the token
            # before it, len(option) + j - 1.
            targets = [
                continuation[j] if low <= (j := i - len(option) + 1) < high else -1
                for i in range(len(tokens))
            ]
            rows.append(_Row(index, tokens, targets))

        def add(entry: _Entry, logits: npt.NDArray[np.float32]) -> None:
            sums[entry.option] += _log_softmax_at(logits, entry.target)

        self._decode_rows(rows, add)

    def candidate_likelihoods(
        self, prefix: list[int], context: list[int], candidates: Sequence[list[int]]
    ) -> list[float]:
        """For each candidate, log P(candidate | prefix + context), summed over its tokens up to
        the first that no other candidate shares (after it, a candidate is all but certain: " read"
        leads to "_file" when no other candidate starts with " read"). Each scored row costs the
        output layer (262k rows for Gemma 3), so the rows are few: the context's last token once,
        whose row gives every candidate's first token, and each candidate's further tokens only
        when they are needed to tell it from another (sequences of one batch)."""
        if not context or any(not candidate for candidate in candidates):
            raise ValueError("candidate scoring needs a context and candidates of at least one token")
        longest = max((len(candidate) for candidate in candidates), default=0)
        if len(prefix) + len(context) + longest > self.context_size:
            raise ValueError("the scoring prompt does not fit the scoring context")
        self._keep_prefix(prefix)
        *head, last = context
        self._keep_context(head)
        sums = [0.0] * len(candidates)
        firsts = [candidate[0] for candidate in candidates]
        rows = [_Row(-1, [last], [_FIRST_TOKENS])]
        for index, candidate in enumerate(candidates):
            length = _telling_length(candidate, candidates)
            if length > 1:
                rows.append(_Row(index, [last, *candidate[: length - 1]], [-1, *candidate[1:length]]))

        def add(entry: _Entry, logits: npt.NDArray[np.float32]) -> None:
            if entry.target == _FIRST_TOKENS:
                for index, score in enumerate(_log_softmax_of(logits, firsts)):
                    sums[index] += score
            else:
                sums[entry.option] += _log_softmax_at(logits, entry.target)

        group: list[_Row] = []
        room = self.context_size - len(self._prefix) - len(self._context)
        for row in rows:
            full = len(group) + 1 >= self._window.sequences
            if group and (full or sum(len(r.tokens) for r in group) + len(row.tokens) > room):
                self._decode_rows(group, add)
                group = []
            group.append(row)
        self._decode_rows(group, add)
        return sums

    def _decode_rows(self, rows: Sequence[_Row], on_row: RowHandler) -> None:
        """Each row's tokens as a sequence of its own after the prefix and context (sharing their
        cells), calling `on_row` for each token with a target (-1: none)."""
        window = self._window
        memory = window.memory
        start = len(self._prefix) + len(self._context)
        entries: list[_Entry] = []
        for slot, row in enumerate(rows, start=PREFIX_SEQUENCE + 1):
            llama_cpp.llama_memory_seq_cp(memory, PREFIX_SEQUENCE, slot, -1, -1)
            for i, (token, target) in enumerate(zip(row.tokens, row.targets, strict=True)):
                entries.append(_Entry(token, start + i, slot, target != -1, target, row.index))
        try:
            window.decode(entries, on_row)
        finally:
            for slot in range(PREFIX_SEQUENCE + 1, PREFIX_SEQUENCE + 1 + len(rows)):
                llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)


# A row's target meaning "every candidate's first token" (candidate_likelihoods).
_FIRST_TOKENS = -2


def _telling_length(candidate: list[int], candidates: Sequence[list[int]]) -> int:
    """How many of `candidate`'s tokens tell it from every other candidate (all of them, if one
    is a prefix of it or the same)."""
    shared = max(
        (_common_length(candidate, other) for other in candidates if other is not candidate), default=0
    )
    return min(shared + 1, len(candidate))


def _common_length(first: list[int], second: list[int]) -> int:
    return next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
        min(len(first), len(second)),
    )


@dataclass(frozen=True)
class _Row:
    """One sequence of a scoring batch: its tokens, and for each the token it predicts (-1: none)."""

    index: int
    tokens: list[int]
    targets: list[int]


def _distinct(options: Iterable[list[int]]) -> list[list[int]]:
    seen: dict[tuple[int, ...], list[int]] = {}
    for option in options:
        seen.setdefault(tuple(option), option)
    return list(seen.values())


def _log_softmax_of(logits: npt.NDArray[np.float32], tokens: Sequence[int]) -> list[float]:
    peak = float(logits.max())
    total = peak + float(np.log(np.exp(logits - peak).sum()))
    return [float(logits[token]) - total for token in tokens]


def _log_softmax_at(logits: npt.NDArray[np.float32], token: int) -> float:
    peak = float(logits.max())
    return float(logits[token]) - peak - float(np.log(np.exp(logits - peak).sum()))
