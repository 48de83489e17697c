"""Several turns decoded at once: one llama.cpp context whose sequences are the turns in flight.

One context decodes one run's turn at a time; a service has many sessions. Here up to
`sequences` turns are in flight: each new turn's prompt is evaluated into a free sequence
(reusing what that sequence or the disk holds of it, as the single-sequence path does), then each
step decodes the next token of every turn in one `llama_decode` call (one batch: the weights are
read once for all of them), and each turn picks its token with its own grammar and sampler
(sampling.ConstrainedSampler, as the single path) and ends on its own: its stop, its limit, its
cancellation. A finished turn's sequence keeps its cells, for a later turn starting the same way.

Each sequence has a cache of its own (kv_unified off): its attention sees what a context of its
own would see, cell for cell. The matrix products are per token too, except that llama.cpp's
repacked x86 weights take a different kernel from 4 tokens a batch on, which rounds differently
from the one-token kernel: greedy picks may then differ on near ties (tests/unit/test_batched.py
and bench/batched.py count how often).

Imports numpy and llama_cpp eagerly: import this module only once a model is needed.
"""

from __future__ import annotations

import codecs
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp._internals import LlamaContext

from llama_agent.runtime.models.backend import ContextOverflow, Generation, ModelError, StopReason, Turn
from llama_agent.runtime.models.sampling import ConstrainedSampler, evaluate_prompt

if TYPE_CHECKING:
    from llama_agent.runtime.models.llama import LlamaModel

log = logging.getLogger(__name__)


class _SequenceCells:
    """What prompt states and `evaluate_prompt` call `llm._ctx`: the context, with removals kept
    to one sequence whatever sequence they name (they are written for a `Llama`'s sequence 0)."""

    def __init__(self, ctx: Any, memory: Any, sequence: int) -> None:
        self.ctx = ctx
        self._memory = memory
        self._sequence = sequence

    def kv_cache_seq_rm(self, _sequence: int, first: int, end: int) -> bool:
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, self._sequence, first, end))


class _Sequence:
    """One sequence of the batched context, offering the part of `Llama`'s interface that prompt
    states and `evaluate_prompt` use (`input_ids`, `n_tokens`, `reset`, `eval`, `_ctx`), plus
    `sequence` (which one) and `logits` (those after its last evaluated token, copied)."""

    def __init__(self, decoder: BatchedDecoder, sequence: int, size: int) -> None:
        self.sequence = sequence
        self.input_ids: npt.NDArray[np.intc] = np.zeros(size, dtype=np.intc)
        self.n_tokens = 0
        self.logits: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._decoder = decoder
        self._ctx = _SequenceCells(decoder.ctx, decoder.memory, sequence)

    @property
    def _input_ids(self) -> npt.NDArray[np.intc]:
        return self.input_ids[: self.n_tokens]

    def reset(self) -> None:
        """Forget what the sequence holds (its cells are dropped by the next `eval`), as `Llama`."""
        self.n_tokens = 0

    def eval(self, tokens: list[int]) -> None:
        """Evaluate `tokens` after the first `n_tokens`, dropping the cells from there on."""
        self._ctx.kv_cache_seq_rm(self.sequence, self.n_tokens, -1)
        decoder = self._decoder
        for first in range(0, len(tokens), decoder.n_batch):
            chunk = tokens[first : first + decoder.n_batch]
            last = len(chunk) - 1
            decoder.decode(
                [(token, self.n_tokens + i, self.sequence, i == last) for i, token in enumerate(chunk)]
            )
            self.input_ids[self.n_tokens : self.n_tokens + len(chunk)] = chunk
            self.n_tokens += len(chunk)
            self.logits = decoder.logits(last)

    def shared(self, tokens: list[int]) -> int:
        """How many of `tokens` this sequence holds already, from the start."""
        common = min(self.n_tokens, len(tokens))
        held = self.input_ids[:common]
        mismatches = np.flatnonzero(held != np.asarray(tokens[:common], dtype=np.intc))
        return int(mismatches[0]) if mismatches.size else common


@dataclass(eq=False)
class _Job:
    turn: Turn
    future: Future[Generation] = field(default_factory=Future)


@dataclass(eq=False)
class _Running:
    """A turn in flight in its sequence: what single-sequence `LlamaModel.generate` keeps in its
    loop, kept between steps."""

    job: _Job
    sequence: _Sequence
    sampler: ConstrainedSampler
    prompt_tokens: int
    cached_tokens: int
    room: int
    started: float
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    pieces: list[str] = field(default_factory=list)
    generated: int = 0
    stop_reason: StopReason = "length"
    first_token_at: float = 0.0

    def feed(self, token: int, text: bytes, end_of_generation: bool) -> bool:
        """Take the token picked; whether the turn ends with it (as `LlamaModel.generate`)."""
        self.first_token_at = self.first_token_at or time.perf_counter()
        if end_of_generation:
            self.stop_reason = "stop"
            return True
        self.generated += 1
        turn = self.job.turn
        piece = self.decoder.decode(text)
        if piece:
            self.pieces.append(piece)
            turn.on_text(piece)
        if (piece and turn.stop_when(piece)) or turn.cancelled():
            self.stop_reason = "cancelled"
            return True
        return self.generated >= min(turn.max_tokens, self.room)

    def generation(self) -> Generation:
        self.pieces.append(self.decoder.decode(b"", final=True))
        return Generation(
            text="".join(self.pieces),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.generated,
            stop_reason=self.stop_reason,
            seconds=time.perf_counter() - self.started,
            cached_tokens=self.cached_tokens,
            first_token_seconds=(self.first_token_at or time.perf_counter()) - self.started,
        )


# A batch entry: token, position, sequence, whether its logits are wanted.
_Entry = tuple[int, int, int, bool]


class BatchedDecoder:
    """Up to `sequences` turns of one `LlamaModel` decoded together on a thread of its own.

    `submit` may be called from any thread; the turn's callbacks are called on the decoder's
    thread. Turns start in the order submitted, as sequences free up."""

    def __init__(self, model: LlamaModel, sequences: int) -> None:
        if sequences < 1:
            raise ValueError(f"a batched decoder needs at least one sequence, not {sequences}")
        self._model = model
        llm = model._llm
        self._llm = llm
        self.size = model.context_size  # each sequence's context, as the single path's
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_seq_max = sequences
        params.n_ctx = self.size * sequences
        # A cache per sequence: each sequence's attention as in a context of its own, and a step's
        # cost grows with each sequence's length, not with all of theirs.
        params.kv_unified = False
        params.embeddings = False
        self._params = params
        self._sequences_wanted = sequences
        self.n_batch = int(params.n_batch)
        self.ctx: Any = None
        self.memory: Any = None
        self._context: LlamaContext | None = None
        self._batch: Any = None
        self._n_vocab = int(llm.n_vocab())
        self._vocab = llm._model.vocab
        self._pending: deque[_Job] = deque()
        self._free: list[_Sequence] = []
        self._running: list[_Running] = []
        self._wake = threading.Condition()
        self._closed = False
        self.steps = 0  # llama_decode calls that decoded one token of each running turn
        self.stepped_tokens = 0  # tokens those decoded
        self.step_seconds = 0.0  # time in steps: picking and decoding, not evaluating prompts
        self._thread = threading.Thread(target=self._serve, name="batched-decoder", daemon=True)
        self._thread.start()

    def submit(self, turn: Turn) -> Future[Generation]:
        """Queue `turn`; its future has its `Generation` (or the error: ContextOverflow, ModelError,
        TypeError for chat messages). Cancelling the future, or `turn.cancelled()`, ends it at its
        next token, leaving the other turns as they go."""
        job = _Job(turn)
        with self._wake:
            if self._closed:
                raise ModelError("the model is closed")
            self._pending.append(job)
            self._wake.notify()
        return job.future

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    # On the decoder's thread from here on.

    def _serve(self) -> None:
        try:
            self._open()
        except (ValueError, RuntimeError) as error:
            self._fail_all(
                ModelError(f"llama.cpp cannot make a context of {self._sequences_wanted} sequences: {error}")
            )
            return
        try:
            while self._next_work():
                for job in self._admitted():
                    self._start(job)
                if self._running:
                    self._step()
        except Exception as error:  # every waiting caller must hear of it
            log.exception("the batched decoder failed")
            self._fail_all(ModelError(f"the model failed: {error}"))
        finally:
            for running in self._running:
                running.sampler.close()
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            if self._context is not None:
                self._context.close()  # type: ignore[no-untyped-call]

    def _open(self) -> None:
        started = time.perf_counter()
        self._context = LlamaContext(model=self._llm._model, params=self._params, verbose=False)
        self.ctx = self._context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(max(self.n_batch, self._sequences_wanted), 0, 1)
        self._free = [_Sequence(self, i, self.size) for i in range(self._sequences_wanted)]
        log.info(
            "batched context of %d sequences ready in %.2f s",
            self._sequences_wanted,
            time.perf_counter() - started,
        )

    def _next_work(self) -> bool:
        """Wait until there is a turn to start or to step; False once closed."""
        with self._wake:
            while not self._closed and not self._running and not self._pending:
                self._wake.wait()
            if self._closed:
                pending, self._pending = list(self._pending), deque()
            else:
                return True
        for job in pending:
            job.future.cancel()
        for running in self._running:
            running.stop_reason = "cancelled"
            self._finish(running)
        return False

    def _admitted(self) -> list[_Job]:
        """The queued turns that free sequences can take now, first come first."""
        jobs: list[_Job] = []
        with self._wake:
            while self._pending and len(jobs) < len(self._free):
                job = self._pending.popleft()
                if job.future.set_running_or_notify_cancel():  # False: cancelled while queued
                    jobs.append(job)
        return jobs

    def _start(self, job: _Job) -> None:
        """Evaluate the turn's prompt into the free sequence holding most of it already."""
        started = time.perf_counter()
        model, turn = self._model, job.turn
        try:
            tokens = model._tokenize(turn.text())
            room = self.size - len(tokens)
            if room <= 0:
                raise ContextOverflow(len(tokens), self.size)
            from llama_agent.runtime.models.llama import _grammar

            sampler = ConstrainedSampler(
                self._vocab, self._n_vocab, _grammar(json.dumps(turn.schema)), turn.temperature, turn.seed
            )
        except (TypeError, ValueError, ModelError, ContextOverflow) as error:
            job.future.set_exception(error)
            return
        sequence = max(self._free, key=lambda free: free.shared(tokens))
        self._free.remove(sequence)
        try:
            evaluated = model._restore_prefixes(tokens, turn.cache_prefixes, sequence)
            evaluated += evaluate_prompt(sequence, tokens)  # type: ignore[arg-type]
        except BaseException:
            sampler.close()
            sequence.reset()
            self._free.append(sequence)
            raise
        self._running.append(
            _Running(job, sequence, sampler, len(tokens), len(tokens) - evaluated, room, started)
        )

    def _step(self) -> None:
        """Pick each running turn's next token; decode the tokens of those that go on, together."""
        started = time.perf_counter()
        going: list[tuple[_Running, int]] = []
        for running in list(self._running):
            if running.job.future.cancelled() or running.job.turn.cancelled():
                running.stop_reason = "cancelled"
                self._finish(running)
                continue
            token = running.sampler.next(running.sequence.logits)
            end = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
            text = b"" if end else self._llm.detokenize([token])
            if running.feed(token, text, end):
                self._finish(running)
            else:
                going.append((running, token))
        if not going:
            return
        entries = [(token, r.sequence.n_tokens, r.sequence.sequence, True) for r, token in going]
        self.decode(entries)
        self.steps += 1
        self.stepped_tokens += len(entries)
        for row, (running, token) in enumerate(going):
            sequence = running.sequence
            sequence.input_ids[sequence.n_tokens] = token
            sequence.n_tokens += 1
            sequence.logits = self.logits(row)
        self.step_seconds += time.perf_counter() - started

    def _finish(self, running: _Running) -> None:
        running.sampler.close()
        self._running.remove(running)
        self._free.append(running.sequence)
        generation = running.generation()
        if not running.job.future.cancelled():
            try:
                running.job.future.set_result(generation)
            except InvalidStateError:  # cancelled meanwhile, by its caller's thread
                log.debug("a turn was cancelled as it ended")

    def _fail_all(self, error: Exception) -> None:
        with self._wake:
            self._closed = True
            jobs = [*self._pending, *(running.job for running in self._running)]
            self._pending.clear()
        self._running.clear()
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    def decode(self, entries: list[_Entry]) -> None:
        """One llama_decode call (at most n_batch entries)."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, wanted) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = wanted
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")

    def logits(self, row: int) -> npt.NDArray[np.float32]:
        """A copy of the logits of the last decode's `row`th entry: later decodes overwrite them."""
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()
