"""`$/progress` reports of an agent run: streamed text, tool calls and their results.

Each report carries, besides LSP's `message`, a `llamaAgent` object saying what happened,
so a client can show the run as it goes. Clients that only know LSP show the `message` of the
latest report in place of the one before (VS Code's notification, Neovim's LspProgress), so
each message is readable on its own: the answer so far, the call being written, a step's result
— never a fragment of the model's JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pygls.protocol import JsonRPCProtocol

from llama_agent.common.text import visible
from llama_agent.services.agent.history import AgentStep
from llama_agent.services.agent.turns import AnswerStream

PROGRESS = "$/progress"
TEXT_LIMIT = 200  # characters of a tool result quoted in a progress message
ANSWER_TAIL = 120  # characters of the answer so far shown in a progress message
CALL_HEAD = 1024  # characters at a turn's start in which to look for the tool it calls
_CALL_START = re.compile(r'\s*\{\s*"tool"\s*:\s*"([^"]*)"')


class RunProgress:
    """Implements `AgentEvents` on a client-supplied `workDoneToken`; silent without one."""

    def __init__(self, protocol: JsonRPCProtocol, token: str | int | None) -> None:
        self._protocol = protocol
        self._token = token
        self._ended = False
        self._turn = ReadableTurn()

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

    def on_turn_start(self, index: int) -> None:
        self._turn = ReadableTurn()

    def on_text(self, text: str) -> None:
        self.report(self._turn.feed(text), {"event": "text", "text": text})

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


def readable_turn(turn: str) -> str:
    """What a person can read of a model turn so far: the end of its answer, or which tool it is
    about to call."""
    return ReadableTurn().feed(turn)


class ReadableTurn:
    """`readable_turn` of a turn that arrives piece by piece, each piece read once: a message
    costs the piece's length, not the turn's."""

    def __init__(self) -> None:
        self._answer = AnswerStream()
        self._answer_end = ""  # the last ANSWER_TAIL characters of the answer so far
        self._head = ""  # the turn's first CALL_HEAD characters
        self._tool: str | None = None

    def feed(self, piece: str) -> str:
        """The message for the turn so far, `piece` being its latest."""
        new = self._answer.feed(piece)
        if self._answer.is_answer:
            self._answer_end = (self._answer_end + new)[-ANSWER_TAIL:]
            return self._answer_end if self._answer.length <= ANSWER_TAIL else "…" + self._answer_end
        if self._tool is None and len(self._head) < CALL_HEAD:
            self._head += piece[: CALL_HEAD - len(self._head)]
            call = _CALL_START.match(self._head)
            self._tool = visible(call.group(1)) if call is not None else None
        return "thinking…" if self._tool is None else f"calling {self._tool}…"
