"""`llama-agent run` asks about a call that may write on the terminal, and only there."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_agent.cli.consent import NO_TERMINAL, QUESTION, TerminalAsker
from llama_agent.runtime.tools.policy import WORKSPACE_GUEST, DirGrant
from llama_agent.services.consent.calls import CallPath, CallText, CannotAsk, Choice, ConsentRequest


@pytest.fixture
def request_(tmp_path: Path) -> ConsentRequest:
    target = tmp_path / "a\x1b[2K.txt"
    return ConsentRequest(
        "write_file",
        tmp_path / "write_file.wasm",
        (DirGrant(tmp_path, WORKSPACE_GUEST, "rw"),),
        {"path": "a\x1b[2K.txt", "content": "hi"},
        (CallPath("path", "a\x1b[2K.txt", target, tmp_path),),
        (CallText("content", "hi"),),
    )


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A real terminal (a pseudo-terminal): what the person types goes to `writer`."""
    controller, follower = os.openpty()
    stdin = open(follower, encoding="utf-8")  # noqa: SIM115 (closed below)
    yield stdin, controller
    stdin.close()
    os.close(controller)


@pytest.mark.parametrize(
    ("typed", "choice"),
    [
        ("o\n", Choice.ALLOW_ONCE),
        ("always\n", Choice.ALLOW_ALWAYS),
        ("\n", Choice.REJECT),
        ("yes\n", Choice.REJECT),
    ],
)
async def test_on_a_terminal_the_person_answers(
    request_: ConsentRequest, terminal: tuple[io.TextIOWrapper, int], typed: str, choice: Choice
) -> None:
    stdin, person = terminal
    shown = io.StringIO()
    os.write(person, typed.encode())
    assert await TerminalAsker(stdin, shown).ask(request_) == choice
    question = shown.getvalue()
    assert "\x1b" not in question and "a\\x1b[2K.txt" in question  # outside words, made visible
    assert question.endswith(QUESTION)


async def test_without_a_terminal_nobody_is_asked_and_the_refusal_says_how(request_: ConsentRequest) -> None:
    shown = io.StringIO()
    with pytest.raises(CannotAsk) as refused:
        await TerminalAsker(io.StringIO("a\n"), shown).ask(request_)
    assert str(refused.value) == NO_TERMINAL and "--allow-writes" in NO_TERMINAL
    assert shown.getvalue() == ""
