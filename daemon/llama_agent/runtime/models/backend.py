"""What the agent needs from a model, whatever runs it: the interfaces backends implement.

Two kinds: a model in the daemon's process (`ModelBackend`: the llama.cpp backend in
`llama_agent.runtime.models.llama`, or a scripted one in tests), prompted with text the daemon formats; and
a model behind a chat server (`ChatBackend`: `llama_agent.runtime.models.remote`), sent messages.
Both are asked for a `Turn` and answer with a `Generation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from llama_agent.common.errors import ModelUnavailable, PromptTooLong

StopReason = Literal["stop", "length", "cancelled"]
BackendKind = Literal["llama", "openai"]
ChatMessage = dict[str, str]


class ModelError(ModelUnavailable):
    """The model cannot be loaded or used; the message says why, for the user."""


class ContextOverflow(PromptTooLong):
    """A prompt longer than the model's context: the model is fine, the request is too big."""


@dataclass(frozen=True)
class RemoteSettings:
    """An OpenAI-compatible chat-completions server (llama-server, vLLM, Ollama, LM Studio)."""

    base_url: str  # up to and including /v1, as OpenAI's clients take it
    model: str | None = None  # None: the server's only (or first) model
    api_key_env: str | None = None  # the environment variable holding the key, never the key
    max_concurrent_runs: int = 4  # a server batches: several runs may be in flight
    timeout_seconds: float = 120.0  # connecting, and each wait for the next piece of a stream
    retries: int = 3  # after a refused connection, a 429 or a 5xx, before any text arrived


@dataclass(frozen=True)
class ModelIdentity:
    """Which backend and model answer: said in `initialize` (as configured) and each run's result."""

    backend: BackendKind
    name: str | None  # the GGUF's file name, its Hugging Face reference, or the served model's id
    base_url: str | None = None
    path: Path | None = None  # a local model's file (for logs: clients are told the name)


@dataclass(frozen=True)
class ModelSettings:
    path: Path | None = None  # None: the embedded default model (or `hub_reference`)
    # A local model's context; for a chat server, the budget the agent keeps its prompts within.
    context_size: int = 4096
    threads: int | None = None  # None: the usable cores, at most 4 (default_threads)
    # A local model's runs decoded at once, each a sequence of one batch (runtime/models/batched.py,
    # a KV cache of `context_size` each); 1: one context, runs take turns.
    parallel_runs: int = 1
    seed: int = 0
    hub_reference: str | None = None  # REPO:FILE.gguf, downloaded once into the cache
    remote: RemoteSettings | None = None  # set: the openai backend, and the settings above are unused

    def identity(self) -> ModelIdentity:
        """The model as configured (a remote server's default model is known once connected)."""
        if self.remote is not None:
            return ModelIdentity("openai", self.remote.model, self.remote.base_url)
        name = self.path.name if self.path else self.hub_reference
        return ModelIdentity("llama", name)


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    stop_reason: StopReason
    seconds: float
    # Prompt tokens the backend did not evaluate: held from an earlier turn or read from disk.
    cached_tokens: int = 0
    # From the call to the first generated token: evaluating the prompt, mostly.
    first_token_seconds: float = 0.0


def _ignore(_: str) -> None:
    return None


def _never_stop(_: str) -> bool:
    return False


def _never_cancelled() -> bool:
    return False


@dataclass(frozen=True)
class Turn:
    """One turn for a model to generate, whatever runs it: what the model is prompted with, the
    JSON schema its text must follow, how it is sampled, and what ends it early.

    A turn ends at the end of generation ("stop"), after `max_tokens` ("length"), or at the first
    piece after which `stop_when(piece)` or `cancelled()` is true ("cancelled"). Every piece goes
    to `on_text` as it comes, before it is given to `stop_when`.
    """

    # Text (its template applied) for a model in the process; messages for a chat server.
    prompt: str | Sequence[ChatMessage]
    schema: dict[str, Any]  # a grammar to a local model, a structured-output constraint to a server
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    # Starts of a text prompt, shortest first, that later prompts share: a local backend may keep
    # them evaluated (on disk too) for those.
    cache_prefixes: tuple[str, ...] = ()
    on_text: Callable[[str], None] = _ignore
    stop_when: Callable[[str], bool] = _never_stop
    cancelled: Callable[[], bool] = _never_cancelled

    def text(self) -> str:
        """The prompt as text, for a model in the process."""
        if not isinstance(self.prompt, str):
            raise TypeError("a local model is sent its prompt text, not chat messages")
        return self.prompt

    def messages(self) -> list[ChatMessage]:
        """The prompt as chat messages, for a chat server."""
        if isinstance(self.prompt, str):
            raise TypeError("a chat server is sent messages, not a prompt text")
        return list(self.prompt)

    def ends_after(self, piece: str) -> bool:
        """Whether the turn ends after `piece` (already given to `on_text`): told to stop, or
        cancelled."""
        return self.stop_when(piece) or self.cancelled()


class ModelBackend(Protocol):
    """One model loaded in the process. Blocking and single-threaded: callers serialise its use."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template, or None for a base model prompted with plain text."""
        ...

    def format_chat(self, messages: list[dict[str, str]]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    @property
    def context_size(self) -> int:
        """How many tokens a prompt and its turn may take together."""
        ...

    def generate(self, turn: Turn) -> Generation:
        """`turn`, prompted with its text (a TypeError for messages): text that follows its
        schema, streamed piece by piece to `turn.on_text`, ended as `Turn` says."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """A model behind a chat server: sent messages, it streams a turn back. Several turns may be
    in flight at once (up to `max_concurrent_runs`); the server applies the chat template."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def max_concurrent_runs(self) -> int: ...

    async def chat(self, turn: Turn) -> Generation:
        """Like `ModelBackend.generate`, sent the turn's messages (a TypeError for text), on the
        event loop; cancelling the task closes the stream. Raises ModelError when the server
        cannot give a turn that follows the schema."""
        ...


@runtime_checkable
class BatchingBackend(Protocol):
    """A model in the process that decodes several turns at once (up to `max_concurrent_runs`), as
    sequences of one batch: `submit` may be called from any thread, and the turn's callbacks are
    called on the model's own thread."""

    @property
    def max_concurrent_runs(self) -> int: ...

    def submit(self, turn: Turn) -> Future[Generation]:
        """Like `ModelBackend.generate`, its result in the future; cancelling the future ends the
        turn at its next token without touching the others."""
        ...

    def close(self) -> None: ...


AnyBackend = ModelBackend | ChatBackend


@runtime_checkable
class LikelihoodScorer(Protocol):
    """A backend that can say how likely a text is: the agent then routes requests to tools by
    likelihood (llama_agent.services.agent.routing). Backends without it let the model choose in its turn."""

    def log_likelihoods(
        self, prefix: str, options: Sequence[str], continuation: str, context: str = ""
    ) -> list[float]:
        """For each option, log P(continuation | prefix + context + option), summed over its
        tokens. The prefix is shared by many calls (worth keeping evaluated), the context not."""
        ...


@runtime_checkable
class CandidateScorer(Protocol):
    """A backend that can also say how likely each of several short texts is right after a prompt:
    the router then asks the model which tool a request needs, beside how likely the request is
    after each tool (llama_agent.services.agent.routing)."""

    def candidate_likelihoods(self, prefix: str, context: str, candidates: Sequence[str]) -> list[float]:
        """For each candidate, log P(candidate | prefix + context), summed over its tokens."""
        ...


# Loads the model `settings` name (or the default one, using the cache directory).
ModelLoader = Callable[[ModelSettings, Path], AnyBackend]
