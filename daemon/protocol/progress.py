"""`$/progress` reports of an agent run: streamed text, tool calls and their results.

Each report carries, besides LSP's `message`, a `llamaAgent` object saying what happened,
so a client can show the run as it goes; clients that only know LSP see the messages.
"""

from __future__ import annotations

import json
from typing import Any

from pygls.protocol import JsonRPCProtocol

from daemon.services.agent import AgentStep

PROGRESS = "$/progress"
TEXT_LIMIT = 200  # characters of a tool result quoted in a progress message


class RunProgress:
    """Implements `AgentEvents` on a client-supplied `workDoneToken`; silent without one."""

    def __init__(self, protocol: JsonRPCProtocol, token: str | int | None) -> None:
        self._protocol = protocol
        self._token = token
        self._ended = False

    def _send(self, value: dict[str, Any]) -> None:
        # A cancelled generation may still relay its last piece after `end`: LSP allows nothing
        # on a token once it has ended.
        if self._token is not None and not self._ended:
            self._protocol.notify(PROGRESS, {"token": self._token, "value": value})

    def begin(self, prompt: str) -> None:
        self._send({"kind": "begin", "title": "Llama Agent", "message": prompt, "cancellable": True})

    def report(self, message: str, event: dict[str, Any]) -> None:
        self._send({"kind": "report", "message": message, "llamaAgent": event})

    def end(self, message: str) -> None:
        self._send({"kind": "end", "message": message})
        self._ended = True

    def on_text(self, text: str) -> None:
        self.report(text, {"event": "text", "text": text})

    def on_tool_call(self, index: int, tool: str, arguments: dict[str, Any]) -> None:
        shown = json.dumps(arguments, ensure_ascii=False)
        self.report(
            f"calling {tool} {shown}",
            {"event": "toolCall", "step": index, "tool": tool, "arguments": arguments},
        )

    def on_tool_result(self, index: int, step: AgentStep) -> None:
        label = "error" if step.is_error else "result"
        quoted = step.result if len(step.result) <= TEXT_LIMIT else step.result[:TEXT_LIMIT] + "…"
        self.report(
            f"{step.tool} {label}: {quoted}",
            {
                "event": "toolResult",
                "step": index,
                "tool": step.tool,
                "result": step.result,
                "isError": step.is_error,
            },
        )
