"""A model backend that plays back written turns: the agent loop's logic, tested deterministically.

It implements `llama_agent.runtime.models.backend.ModelBackend` as the llama.cpp backend does: each
"token" is a few characters, streamed to the turn's `on_text`; `max_tokens`, `stop_when` and
cancellation cut a turn the same way. It records what it was asked (prompts, schemas, limits) so
tests can check what the model saw. `python -m tests.scripted_daemon` serves it in the real daemon.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_agent.runtime.models.backend import (
    ContextOverflow,
    Generation,
    ModelBackend,
    ModelError,
    ModelIdentity,
    ModelSettings,
    StopReason,
    Turn,
)

# What the model says once its script has run out.
SCRIPT_ENDED = '{"answer": "(the script has ended)"}'


def call(tool: str, **arguments: Any) -> str:
    """A model turn that calls `tool`, as the grammar has it written."""
    return json.dumps({"tool": tool, "arguments": arguments})


def answer(text: str) -> str:
    """A model turn that answers."""
    return json.dumps({"answer": text})


@dataclass(frozen=True)
class Request:
    """One generation the agent asked for, and what came of it."""

    prompt: str
    schema: dict[str, Any]
    max_tokens: int
    temperature: float
    seed: int
    stop_reason: StopReason
    pieces: int


@dataclass
class ScriptedModel:
    turns: list[str]
    piece_size: int = 4  # characters per token
    piece_delay: float = 0.0  # seconds before each token
    chat_template: str | None = None
    path: Path = Path("scripted.gguf")
    record_to: Path | None = None  # also append each Request here, as a JSON line
    context_size: int = 4096  # in its "tokens" (piece_size characters)
    requests: list[Request] = field(default_factory=list)
    chats: list[list[dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, script: Path) -> ScriptedModel:
        """A JSON script: {"turns": [...], "pieceSize": 4, "pieceDelay": 0.02, "chatTemplate": null,
        "log": PATH, "contextSize": 4096}; only "turns" is required."""
        spec = json.loads(script.read_text(encoding="utf-8"))
        return cls(
            turns=list(spec["turns"]),
            piece_size=spec.get("pieceSize", 4),
            piece_delay=spec.get("pieceDelay", 0.0),
            chat_template=spec.get("chatTemplate"),
            record_to=Path(spec["log"]) if spec.get("log") else None,
            context_size=spec.get("contextSize", 4096),
        )

    def loader(self) -> Callable[[ModelSettings, Path], ModelBackend]:
        def load(settings: ModelSettings, cache_dir: Path) -> ModelBackend:
            if settings.path is not None and not settings.path.exists():
                raise ModelError(f"model file not found: {settings.path}")
            self.path = settings.path or self.path
            return self

        return load

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity("llama", self.path.name, path=self.path)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        if self.chat_template is None:
            raise ModelError("this model has no chat template")
        self.chats.append(messages)
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // self.piece_size)

    def generate(self, turn: Turn) -> Generation:
        started = time.perf_counter()
        prompt = turn.text()
        if self.count_tokens(prompt) >= self.context_size:  # as the llama.cpp backend refuses it
            raise ContextOverflow(self.count_tokens(prompt), self.context_size)
        with self._lock:
            text = self.turns.pop(0) if self.turns else SCRIPT_ENDED
        pieces = [text[i : i + self.piece_size] for i in range(0, len(text), self.piece_size)]
        stop_reason: StopReason = "stop"
        emitted: list[str] = []
        first_piece_at = 0.0
        for piece in pieces:
            if self.piece_delay:
                time.sleep(self.piece_delay)
            first_piece_at = first_piece_at or time.perf_counter()
            emitted.append(piece)
            turn.on_text(piece)
            # The same checks, in the same order, as the llama.cpp backend: a turn that takes its
            # whole budget ends at "length" before its end of generation is seen.
            if turn.stop_when(piece) or turn.cancelled():
                stop_reason = "cancelled"
                break
            if len(emitted) >= turn.max_tokens:
                stop_reason = "length"
                break
        self._record(
            Request(
                prompt, turn.schema, turn.max_tokens, turn.temperature, turn.seed, stop_reason, len(emitted)
            )
        )
        return Generation(
            text="".join(emitted),
            prompt_tokens=self.count_tokens(prompt),
            completion_tokens=len(emitted),
            stop_reason=stop_reason,
            seconds=time.perf_counter() - started,
            first_token_seconds=(first_piece_at or time.perf_counter()) - started,
        )

    def _record(self, request: Request) -> None:
        self.requests.append(request)
        if self.record_to is not None:
            with self.record_to.open("a", encoding="utf-8") as log:
                log.write(json.dumps(request.__dict__) + "\n")


def recorded(log: Path) -> list[dict[str, Any]]:
    """The requests a scripted daemon wrote to its log."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
