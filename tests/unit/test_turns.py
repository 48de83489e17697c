"""Reading turns as they stream: partial answers, runaway repetition, readable progress."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.protocol.progress import readable_turn
from daemon.services.turns import RunawayGuard, partial_answer, runaway_start


@given(st.text())
def test_every_prefix_of_an_answer_decodes_to_a_prefix_of_its_text(text: str) -> None:
    turn = json.dumps({"answer": text})
    for end in range(len(turn) + 1):
        decoded = partial_answer(turn[:end])
        if decoded is not None:
            assert text.startswith(decoded), (turn[:end], decoded)
    assert partial_answer(turn) == text


@pytest.mark.parametrize("turn", ['{"tool": "echo"', "", '{"', '["answer"'])
def test_a_turn_that_is_not_an_answer_has_no_answer_text(turn: str) -> None:
    assert partial_answer(turn) is None


def test_escapes_cut_in_the_middle_are_left_out() -> None:
    assert partial_answer('{"answer": "a\\') == "a"
    assert partial_answer('{"answer": "a\\u00') == "a"
    assert partial_answer('{"answer": "a\\u00e9') == "aé"
    assert partial_answer('{"answer": "\\ud83d\\ude00!') == "😀!"


@pytest.mark.parametrize(
    ("unit", "copies"),
    [("The file says hi. ", 6), ("x", 80), ("ab", 40), ("Sorry, I cannot do that.\n", 4)],
)
def test_runaway_repetitions_are_found_and_one_copy_kept(unit: str, copies: int) -> None:
    turn = '{"answer": "Well: ' + unit * copies
    cut = runaway_start(turn)
    assert cut is not None
    kept, dropped = turn[:cut], turn[cut:]
    assert kept.count(unit.strip()) == 1  # one copy stays (it may start a character early) ...
    assert len(dropped) >= len(unit) * (copies - 1)  # ... and every further copy goes


@pytest.mark.parametrize(
    "text",
    [
        "x" * 79,  # short runs are text
        "1000000000000000",
        "| --- | --- | --- | --- |",
        "The first line.\nThe second line.\nThe third line.\n" * 2,  # two copies are not a loop
        " ".join(f"item{n}" for n in range(40)),
    ],
)
def test_ordinary_text_is_not_a_runaway(text: str) -> None:
    assert runaway_start(text) is None


def test_the_guard_stops_once_and_remembers_where() -> None:
    guard = RunawayGuard()
    pieces = ['{"answer": "', *["go on. "] * 30]
    stops = [guard.feed(piece) for piece in pieces]
    first = stops.index(True)
    assert all(stops[first:]) and not any(stops[:first])
    assert guard.text[: guard.cut_at].endswith('{"answer": "go on. ')


@pytest.mark.parametrize(
    ("turn", "shown"),
    [
        ('{"', "thinking…"),
        ('{"tool": "ec', "thinking…"),
        ('{"tool": "echo"', "calling echo…"),
        ('{"tool": "echo", "arguments": {"val', "calling echo…"),
        ('{"answer": "She said \\"hi', 'She said "hi'),
        ('{"answer": "' + "word " * 100, "…" + ("word " * 100)[-120:]),
    ],
)
def test_progress_messages_are_readable_on_their_own(turn: str, shown: str) -> None:
    assert readable_turn(turn) == shown
