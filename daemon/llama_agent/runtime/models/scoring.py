"""Log-likelihoods of a continuation after a prefix and each of several options, on llama.cpp.

The agent's tool router asks how likely the user's request is after "Tool: NAME", for each
tool (a noisy-channel classifier: a small model is far better at that than at naming the tool
itself). A second context over the same weights does the scoring, so that the generation
context keeps its cached prompt; its prefix stays cached between requests.

Imports numpy and llama_cpp eagerly: import this module only once a model is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp
import numpy as np
import numpy.typing as npt

from llama_agent.runtime.models.prompt_states import PromptStates

# The prefix (few-shot requests) and one option with the continuation must fit.
SCORING_CONTEXT = 2048
# With more options than FINALISTS, all are scored on the continuation's first PRUNE_AFTER tokens
# and only the FINALISTS likeliest on the whole of it; the others get -inf.
PRUNE_AFTER = 6
FINALISTS = 3


class PrefixScorer:
    """One llama.cpp context that keeps a prefix evaluated and scores continuations after it."""

    def __init__(self, llm: llama_cpp.Llama, states: PromptStates | None = None) -> None:
        self._llm = llm
        self._states = states  # None: the prefix is evaluated in every new process
        self._prefix: list[int] = []
        self._context: list[int] = []  # evaluated after the prefix
        self._batch_size = int(llm.n_batch)

    @property
    def context_size(self) -> int:
        return int(self._llm.n_ctx())

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
        self._keep_prefix(prefix)
        self._keep_context(list(context))
        if len(options) <= FINALISTS or len(continuation) <= PRUNE_AFTER:
            return [self._score(option, continuation) for option in options]
        # Most of the cost is the output layer, once per scored token (262k rows for Gemma 3):
        # score every option on the continuation's first tokens, and only the likeliest on all.
        heads = [self._score(option, continuation[:PRUNE_AFTER]) for option in options]
        finalists = set(sorted(range(len(options)), key=lambda i: -heads[i])[:FINALISTS])
        return [
            self._score(option, continuation) if i in finalists else float("-inf")
            for i, option in enumerate(options)
        ]

    def _keep_prefix(self, prefix: list[int]) -> None:
        if prefix == self._prefix:
            return
        self._prefix = []
        self._context = []
        if self._states is not None:
            self._states.evaluate(self._llm, prefix)
        else:
            self._llm.reset()  # type: ignore[no-untyped-call]
            self._llm.eval(prefix)
        self._prefix = list(prefix)

    def _keep_context(self, context: list[int]) -> None:
        if context == self._context:
            return
        start = len(self._prefix)
        self._llm._ctx.kv_cache_seq_rm(0, start, -1)
        self._context = []
        if context:
            self._decode(context, start, {len(context) - 1})  # one row: llama.cpp wants some
        self._context = context

    def _score(self, option: list[int], continuation: list[int]) -> float:
        start = len(self._prefix) + len(self._context)
        self._llm._ctx.kv_cache_seq_rm(0, start, -1)
        tokens = option + continuation
        # Row i of the logits predicts tokens[i + 1]: the continuation is predicted by the rows
        # from the option's last token on.
        wanted = range(len(option) - 1, len(tokens) - 1)
        rows = self._decode(tokens, start, set(wanted))
        total = sum(_log_softmax_at(rows[row], tokens[row + 1]) for row in wanted)
        self._llm._ctx.kv_cache_seq_rm(0, start, -1)
        return total

    def _decode(self, tokens: list[int], start: int, wanted: set[int]) -> dict[int, npt.NDArray[np.float32]]:
        """Evaluate `tokens` from position `start`; the logits of the positions in `wanted`."""
        n_vocab = self._llm.n_vocab()
        rows: dict[int, npt.NDArray[np.float32]] = {}
        batch = llama_cpp.llama_batch_init(self._batch_size, 0, 1)
        try:
            for chunk_start in range(0, len(tokens), self._batch_size):
                chunk = tokens[chunk_start : chunk_start + self._batch_size]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = start + chunk_start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = (chunk_start + i) in wanted
                if llama_cpp.llama_decode(self._llm._ctx.ctx, batch) != 0:
                    raise RuntimeError("llama.cpp could not evaluate the scoring batch")
                for i in range(len(chunk)):
                    if (chunk_start + i) in wanted:
                        pointer = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, i)
                        rows[chunk_start + i] = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).copy()
        finally:
            llama_cpp.llama_batch_free(batch)
        return rows


def _log_softmax_at(logits: npt.NDArray[np.float32], token: int) -> float:
    peak = float(logits.max())
    return float(logits[token]) - peak - float(np.log(np.exp(logits - peak).sum()))
