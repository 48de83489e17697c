"""The person at an LSP client: answering the daemon's questions (window/showMessageRequest).

The daemon asks two kinds: about a call that may write (actions "Allow once", "Always allow in
this session", "Reject"), and about what a tool's policy asks beyond the defaults ("Allow once",
"Always allow", "Deny"). A test that needs a write to happen answers the first kind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.rpc import DaemonSession

QUESTION = "window/showMessageRequest"
ALLOW_ONCE, ALWAYS, REJECT = "Allow once", "Always allow in this session", "Reject"
Answer = Callable[[Any], Awaitable[Any]]


def is_call_question(params: Any) -> bool:
    return ALWAYS in [action["title"] for action in params.get("actions", [])]


def answer_writes(daemon: DaemonSession, *titles: str | None, grants: Answer | None = None) -> list[Any]:
    """Answer the daemon's questions about calls that may write with `titles` in order (the last
    one for every question after; None: dismissed), and its questions about grants with `grants`
    (default: dismissed). Returns the list the write questions' params are added to."""
    asked: list[Any] = []
    answers = list(titles or (ALLOW_ONCE,))

    async def answer(params: Any) -> Any:
        if not is_call_question(params):
            return None if grants is None else await grants(params)
        asked.append(params)
        title = answers.pop(0) if len(answers) > 1 else answers[0]
        return None if title is None else {"title": title}

    daemon.on_server_request(QUESTION, answer)
    return asked
