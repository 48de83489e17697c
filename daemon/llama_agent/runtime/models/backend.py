"""What the agent needs from a model, whatever runs it: the interfaces backends implement.

Two kinds: a model in the daemon's process (`ModelBackend`: the llama.cpp backend in
`llama_agent.runtime.models.llama`, or a scripted one in tests), prompted with text the daemon formats; and
a model behind a chat server (`ChatBackend`: `llama_agent.runtime.models.remote`), sent messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

StopReason = Literal["stop", "length", "cancelled"]
BackendKind = Literal["llama", "openai"]
ChatMessage = dict[str, str]


class ModelError(Exception):
    """The model cannot be loaded or used; the message says why, for the user."""


class ContextOverflow(Exception):
    """A prompt longer than the model's context: the model is fine, the request is too big."""

    def __init__(self, prompt_tokens: int, context_size: int) -> None:
        super().__init__(
            f"the prompt ({prompt_tokens} tokens) does not fit the model's context ({context_size} tokens)"
        )
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size


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
    context_size: int = 4096
    threads: int | None = None  # None: the usable cores, at most 4 (default_threads)
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

    def generate(
        self,
        prompt: str,
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        seed: int,
        on_text: Callable[[str], None] = ...,
        cancelled: Callable[[], bool] = ...,
        cache_prefixes: Sequence[str] = ...,
    ) -> Generation:
        """Text that follows the JSON `schema`, streamed piece by piece to `on_text`; a backend
        may keep the evaluated `cache_prefixes` (starts of `prompt`, shortest first, that later
        prompts share).

        Stops at the end of generation ("stop"), after `max_tokens` ("length"), or at the first
        token after `cancelled()` turns true ("cancelled").
        """
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """A model behind a chat server: sent messages, it streams a turn back. Several turns may be
    in flight at once (up to `max_concurrent_runs`); the server applies the chat template."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def max_concurrent_runs(self) -> int: ...

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        seed: int,
        on_text: Callable[[str], None],
        stop_when: Callable[[str], bool],
    ) -> Generation:
        """Like `ModelBackend.generate`, on the event loop: each piece goes to `on_text`, and the
        turn stops ("cancelled") once `stop_when` says so; cancelling the task closes the stream.
        Raises ModelError when the server cannot give a turn that follows `schema`."""
        ...


AnyBackend = ModelBackend | ChatBackend


@runtime_checkable
class LikelihoodScorer(Protocol):
    """A backend that can say how likely a text is: the agent then routes requests to tools by
    likelihood (llama_agent.services.agent.routing). Backends without it let the model choose in its turn."""

    def log_likelihoods(self, prefix: str, options: Sequence[str], continuation: str) -> list[float]:
        """For each option, log P(continuation | prefix + option), summed over its tokens."""
        ...


# Loads the model `settings` name (or the default one, using the cache directory).
ModelLoader = Callable[[ModelSettings, Path], AnyBackend]
