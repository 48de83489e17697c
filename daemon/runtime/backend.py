"""What the agent needs from a model, whatever runs it: the interface every backend implements.

The llama.cpp backend (`daemon.runtime.model`) is the real one; tests drive the agent loop
with a scripted backend behind this same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

StopReason = Literal["stop", "length", "cancelled"]


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
class ModelSettings:
    path: Path | None = None  # None: the embedded default model
    context_size: int = 4096
    threads: int | None = None  # None: the usable cores, at most 4 (default_threads)
    seed: int = 0


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
    """One loaded model. Blocking and single-threaded: callers serialise its use."""

    @property
    def path(self) -> Path: ...

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
class LikelihoodScorer(Protocol):
    """A backend that can say how likely a text is: the agent then routes requests to tools by
    likelihood (daemon.services.routing). Backends without it let the model choose in its turn."""

    def log_likelihoods(self, prefix: str, options: Sequence[str], continuation: str) -> list[float]:
        """For each option, log P(continuation | prefix + option), summed over its tokens."""
        ...


# Loads the model `settings` name (or the default one, using the cache directory).
ModelLoader = Callable[[ModelSettings, Path], ModelBackend]
