"""Reading turns as they stream: partial answers, runaway repetition, readable progress."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_agent.faces.lsp.progress import ReadableTurn, readable_turn
from llama_agent.services.agent.turns import AnswerStream, RunawayGuard, partial_answer, runaway_start


def split(text: str, cuts: list[int]) -> list[str]:
    """`text` in pieces, cut at `cuts` (positions, in any order)."""
    points = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[start:end] for start, end in itertools.pairwise(points)]


# Turns with what makes reading them incrementally hard: escapes of every kind, surrogate pairs
# and lone halves, whitespace in the opening, and text after the answer's end.
turns = st.one_of(
    st.text().map(lambda text: json.dumps({"answer": text})),
    st.text().map(lambda text: json.dumps({"answer": text}, ensure_ascii=False)),
    st.lists(
        st.sampled_from(
            [
                '{"answer": "',
                ' { "answer" :\n"',
                "a",
                "\\",
                '\\"',
                "\\u00e9",
                "\\ud83d",
                "\\ude00",
                "\\u12",
                '"',
                "}",
                " ",
                '{"tool": "echo"',
                "\\n",
                "é",
            ]
        ),
    ).map("".join),
    st.text(alphabet=' {}"answer:\\u0d8e', max_size=40),
)


@given(st.text())
def test_every_prefix_of_an_answer_decodes_to_a_prefix_of_its_text(text: str) -> None:
    turn = json.dumps({"answer": text})
    for end in range(len(turn) + 1):
        decoded = partial_answer(turn[:end])
        if decoded is not None:
            assert text.startswith(decoded), (turn[:end], decoded)
    assert partial_answer(turn) == text


@given(turns, st.lists(st.integers(min_value=0), max_size=12))
def test_an_answer_read_piece_by_piece_is_the_answer_read_whole(turn: str, cuts: list[int]) -> None:
    stream = AnswerStream()
    decoded, so_far = "", ""
    for piece in split(turn, cuts):
        decoded += stream.feed(piece)
        so_far += piece
        whole = partial_answer(so_far)
        assert (decoded if stream.is_answer else None) == whole, (so_far, decoded)
        assert stream.length == len(decoded)


@given(turns, st.lists(st.integers(min_value=0), max_size=12))
def test_progress_read_piece_by_piece_is_progress_read_whole(turn: str, cuts: list[int]) -> None:
    reader, so_far = ReadableTurn(), ""
    for piece in split(turn, cuts):
        so_far += piece
        assert reader.feed(piece) == readable_turn(so_far)


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


@given(
    st.text(alphabet="ab \n.", max_size=60),
    st.text(alphabet="ab \n.", min_size=1, max_size=130),
    st.integers(min_value=1, max_value=90),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_the_guard_cuts_where_reading_the_whole_turn_at_each_piece_would(
    start: str, unit: str, copies: int, cuts: list[int]
) -> None:
    turn = start + unit * copies
    guard, so_far, expected = RunawayGuard(), "", None
    for piece in split(turn, cuts):
        so_far += piece
        expected = expected if expected is not None else runaway_start(so_far)
        assert guard.feed(piece) == (expected is not None)
        assert guard.cut_at == expected
    assert guard.text == turn


def test_a_long_turn_costs_each_piece_the_same() -> None:
    """Reading 20,000 pieces is linear work: re-reading the turn at each piece took minutes."""
    pieces = ['{"answer": "', *(f"{n} \\u00e9\\n" for n in range(20_000))]
    guard, answer, readable = RunawayGuard(), AnswerStream(), ReadableTurn()
    started = time.process_time()
    for piece in pieces:
        guard.feed(piece)
        answer.feed(piece)
        readable.feed(piece)
    spent = time.process_time() - started
    assert guard.cut_at is None
    assert answer.length == len(partial_answer("".join(pieces)) or "")
    assert spent < 3.0, spent  # about 0.1 s


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
