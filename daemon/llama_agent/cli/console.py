"""Shows an agent run on a terminal: the model's text as it streams, each call, the answer.

The model's text, the calls it makes and the tools' results are outside words: they are shown with
their lines and tabs, and every other control character made visible, so that none of them can
move the cursor, erase what came before or retitle the terminal.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from llama_agent.common.text import visible
from llama_agent.services.agent.history import AgentStep
from llama_agent.services.agent.loop import AgentResult

LINES = "\n\t"  # kept as they are in multi-line text


class ConsoleEvents:
    def __init__(self, out: TextIO, progress: TextIO) -> None:
        self._out = out
        self._progress = progress
        self._streaming = False

    def on_turn_start(self, index: int) -> None:
        self._end_stream()

    def on_text(self, text: str) -> None:
        self._progress.write(visible(text, keep=LINES))
        self._progress.flush()
        self._streaming = True

    def _end_stream(self) -> None:
        if self._streaming:
            self._progress.write("\n")
            self._progress.flush()
            self._streaming = False

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        self._end_stream()
        call = f"{tool} {json.dumps(arguments, ensure_ascii=False)}"
        print(f"→ {visible(call)}", file=self._out, flush=True)

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        marker = "✗" if step.is_error else "←"
        print(f"{marker} {visible(step.result.rstrip(), keep=LINES)}", file=self._out, flush=True)

    def finish(self, result: AgentResult) -> None:
        self._end_stream()
        print(f"Answer: {visible(result.answer, keep=LINES)}", file=self._out, flush=True)
        print(f"({summary(result)})", file=self._progress, flush=True)


def summary(result: AgentResult) -> str:
    """One line of what a run cost: tokens (and how many were reused), speed, why it stopped."""
    timings = result.timings
    parts = [
        f"{len(result.steps)} tool call(s)",
        f"{result.prompt_tokens} prompt tokens ({result.cached_prompt_tokens} reused)"
        f" + {result.completion_tokens} generated",
    ]
    if timings.first_token is not None:
        parts.append(f"first token after {timings.first_token:.2f} s")
    if timings.generation > 0:
        # Each token after a turn's first one is a forward pass for the previous one, and the
        # turn's end of generation is one more: as many passes as tokens counted.
        parts.append(f"{result.completion_tokens / timings.generation:.1f} tokens/s")
    parts.append(f"stop: {result.stop_reason}")
    if result.model is not None:
        where = f" at {result.model.base_url}" if result.model.base_url else ""
        # A served model's name is the server's word.
        parts.append(visible(f"model: {result.model.name} ({result.model.backend}{where})"))
    return ", ".join(parts)
