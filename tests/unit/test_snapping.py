"""Near-copies of the request's file names and bracketed text, snapped to the exact text."""

from __future__ import annotations

from typing import Any

import pytest
from llama_agent.services.agent.snapping import snap_arguments


@pytest.mark.parametrize(
    ("value", "source", "snapped"),
    [
        ("todo.md", "Show me lines 2 to 3 of TODO.md.", "TODO.md"),  # case
        ("docs/todo.md", "Show me lines 2 to 3 of TODO.md.", "TODO.md"),  # a directory made up
        ("inventory.csv", "Read data/inventory.csv, then add it up.", "data/inventory.csv"),  # one dropped
        ("reminder/monday.txt", "Put it into reminders/monday.txt.", "reminders/monday.txt"),  # a letter
        ("Notes.txt", "Read 'notes.txt' (the short one)", "notes.txt"),  # quotes and brackets are no part
    ],
)
def test_a_near_copy_of_a_path_like_word_is_snapped_to_it(value: str, source: str, snapped: str) -> None:
    assert snap_arguments({"path": value, "n": 2}, [source]) == {"path": snapped, "n": 2}


@pytest.mark.parametrize(
    ("value", "sources"),
    [
        ("notes.txt", ["Read notes.txt"]),  # an exact copy
        ("Europe/Paris", ["What time is it in Paris?"]),  # Paris is no path
        ("src/main.js", ["Look in src, then open main.js"]),  # a directory named elsewhere
        ("src/main.js", ["Open main.js", "src/\nREADME.md"]),  # or listed
        ("projects", ["What files are in my project folder?"]),  # nor is project
        ("colour", ["What colour, or color?"]),
        ("a.md", ["Read a.MD or A.md"]),  # two words alike: which one?
        ("two words.txt", ["Read two_words.txt"]),  # more than one word: a sentence, not a copy
        ("config", ["config/settings.ini:7: port = 8080"]),  # too different
        ("x.y", ["nothing alike here"]),
    ],
)
def test_anything_else_is_left_as_the_model_wrote_it(value: str, sources: list[str]) -> None:
    assert snap_arguments({"path": value}, sources) == {"path": value}


def test_results_are_sources_too_and_other_types_are_untouched() -> None:
    arguments: dict[str, Any] = {"path": "today.txt", "append": True, "n": 3}
    snapped = snap_arguments(arguments, ["open it", "wrote 13 bytes to notes/today.txt"])
    assert snapped == {"path": "notes/today.txt", "append": True, "n": 3}


@pytest.mark.parametrize(
    ("value", "source", "snapped"),
    [
        ("12 + 8 * 3 - 5", "Calculate (12 + 8) * 3 - 5 for me.", "(12 + 8) * 3 - 5"),
        ("2 * 3 + 4", "What is 2 * (3 + 4)?", "2 * (3 + 4)"),  # widened over the closing one
        ("sqrt16 + 1", "Work out sqrt(16) + 1 please", "sqrt(16) + 1"),
        ("a b c", "Echo [a {b} c] now", "a {b} c"),  # the brackets inside: the outer ones are not missing
    ],
)
def test_a_copy_that_lost_its_brackets_gets_them_back(value: str, source: str, snapped: str) -> None:
    assert snap_arguments({"expression": value}, [source]) == {"expression": snapped}


@pytest.mark.parametrize(
    ("value", "sources"),
    [
        ("12 + 8", ["(12 + 8) * 3"]),  # an exact copy of part of it
        ("hello world", ["Say (hello world) twice"]),
        ("1 + 2", ["(1 + 2) or [1 + 2]"]),  # two spans: which one?
        ("1 + 2", ["1 + (2", "x"]),  # a bracket that never closes
        ("a b", ["(a] b)"]),  # brackets that cross
        ("2 * 3", ["What is 2 * 4?"]),  # not a copy at all
    ],
)
def test_brackets_come_back_only_to_an_exact_balanced_copy(value: str, sources: list[str]) -> None:
    assert snap_arguments({"expression": value}, sources) == {"expression": value}


@pytest.mark.parametrize(
    ("value", "sources", "snapped"),
    [
        ("todo", ["Find every line that mentions TODO."], "TODO"),  # a search for it finds it
        ("call the bank", ["Add '- [ ] Call the bank' to TODO.md"], "Call the bank"),  # more words
        ("remember", ["Read notes.txt", "Remember the plants.\n"], "Remember"),  # a result's spelling
        ("print(x)", ["grep for PRINT(x) please"], "PRINT(x)"),  # brackets at the edge
    ],
)
def test_a_copy_in_other_case_takes_the_spelling_it_copies(
    value: str, sources: list[str], snapped: str
) -> None:
    assert snap_arguments({"value": value}, sources) == {"value": snapped}


@pytest.mark.parametrize(
    ("value", "sources"),
    [
        ("todo", ["TODO or Todo?"]),  # two spellings: which one?
        ("todo", ["Mentions todo and TODO"]),  # there as it is
        ("todo", ["see TODOS"]),  # only inside a longer word
        ("todo", ["see TODO.md"]),  # or a file name
        ("ab", ["AB"]),  # too short to be sure
    ],
)
def test_case_is_left_alone_unless_one_other_spelling_is_copied(value: str, sources: list[str]) -> None:
    assert snap_arguments({"value": value}, sources) == {"value": value}
