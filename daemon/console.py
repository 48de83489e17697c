"""Shows an agent run on a terminal: the model's text as it streams, each call, the answer."""

from __future__ import annotations

import json
from typing import Any, TextIO

from daemon.services.agent import AgentResult, AgentStep


class ConsoleEvents:
    def __init__(self, out: TextIO, progress: TextIO) -> None:
        self._out = out
        self._progress = progress
        self._streaming = False

    def on_turn_start(self, index: int) -> None:
        self._end_stream()

    def on_text(self, text: str) -> None:
        self._progress.write(text)
        self._progress.flush()
        self._streaming = True

    def _end_stream(self) -> None:
        if self._streaming:
            self._progress.write("\n")
            self._progress.flush()
            self._streaming = False

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        self._end_stream()
        print(f"→ {tool} {json.dumps(arguments, ensure_ascii=False)}", file=self._out, flush=True)

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        marker = "✗" if step.is_error else "←"
        print(f"{marker} {step.result.rstrip()}", file=self._out, flush=True)

    def finish(self, result: AgentResult) -> None:
        self._end_stream()
        print(f"Answer: {result.answer}", file=self._out, flush=True)
        print(
            f"({len(result.steps)} tool call(s), {result.prompt_tokens} prompt + "
            f"{result.completion_tokens} completion tokens, stop: {result.stop_reason})",
            file=self._progress,
            flush=True,
        )
