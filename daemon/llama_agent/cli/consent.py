"""Asking the person on the terminal about a call that may write (`llama-agent run`).

When stdin is a terminal the question is written to stderr (where the run's progress goes) and the
answer read from stdin; otherwise nobody can answer, and the call is refused saying how to approve
writes up front (`--allow-writes`). `tools invoke` asks nothing: the person typed the call.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from llama_agent.services.consent.calls import CannotAsk, Choice, ConsentRequest

NO_TERMINAL = (
    "stdin is not a terminal, so nobody can be asked: run again with --allow-writes to approve "
    "writes up front"
)
QUESTION = "Allow? [o]nce, [a]lways in this run, [N]o: "
ANSWERS = {
    "o": Choice.ALLOW_ONCE,
    "once": Choice.ALLOW_ONCE,
    "a": Choice.ALLOW_ALWAYS,
    "always": Choice.ALLOW_ALWAYS,
}


class TerminalAsker:
    """An `Asker` (services/sessions.py) on the terminal."""

    def __init__(self, stdin: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self._stdin = stdin or sys.stdin
        self._stderr = stderr or sys.stderr

    async def ask(self, request: ConsentRequest) -> Choice:
        if not self._stdin.isatty():
            raise CannotAsk(NO_TERMINAL)
        print(request.message(), file=self._stderr, flush=True)  # made visible: outside words
        return await asyncio.to_thread(self._answer)

    def _answer(self) -> Choice:
        self._stderr.write(QUESTION)
        self._stderr.flush()
        line = self._stdin.readline()
        return ANSWERS.get(line.strip().lower(), Choice.REJECT)
