"""Near-copies of the request's file names and bracketed text, snapped to the exact text."""

from __future__ import annotations

from typing import Any

import pytest
from llama_agent.services.agent.history import AgentStep, PastTurn
from llama_agent.services.agent.snapping import recent_paths, snap_arguments


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


GROCERIES = "Create a file groceries.txt that says: apples, rice"


@pytest.mark.parametrize(
    ("value", "source", "snapped"),
    [
        ("grocery.txt", GROCERIES, "groceries.txt"),  # 0.83 alike as a whole: a plural, not a typo
        ("city.md", "Append Oslo to cities.md", "cities.md"),
        ("boxes.csv", "Count the rows of box.csv", "box.csv"),  # the other way round
        ("Grocery.TXT", GROCERIES, "groceries.txt"),  # extensions in any case
        ("grocery.txt", "Read lists/groceries.txt", "lists/groceries.txt"),  # its folder dropped
    ],
)
def test_a_copy_in_the_other_number_is_snapped_to_the_file_it_copies(
    value: str, source: str, snapped: str
) -> None:
    assert snap_arguments({"path": value}, [source]) == {"path": snapped}


@pytest.mark.parametrize(
    ("value", "sources"),
    [
        ("report.txt", ["Read notes.txt"]),  # another name
        ("a.txt", ["Read b.txt"]),
        ("grocery.md", [GROCERIES]),  # another extension
        ("grocery", [GROCERIES]),  # none
        ("day2.txt", ["Read day1.txt"]),  # as alike as grocery and groceries, but another file
        ("data_backup.csv", ["Copy data.csv to a backup"]),  # a new file named after the old one
        ("old/grocery.txt", [GROCERIES]),  # a folder the request never named
        ("grocery.txt", ["Read groceries.txt and Groceries.txt"]),  # two alike: which one?
    ],
)
def test_other_files_are_no_copies_in_the_other_number(value: str, sources: list[str]) -> None:
    assert snap_arguments({"path": value}, sources) == {"path": value}


RECENT = ["groceries.txt", "config/settings.ini"]


@pytest.mark.parametrize(
    "request_text",
    [
        "Now add coffee to it on a new line",
        "Open it and tell me the max connections",
        "What's in it now?",
        "What is it",
        "show me that file",
        "Show me that.",
        "Use the same file",
        "Put a line there",
    ],
)
def test_a_made_up_path_of_a_request_that_refers_back_becomes_the_latest_path(request_text: str) -> None:
    arguments = {"path": "coffee.txt", "text": "coffee"}
    snapped = snap_arguments(arguments, [request_text], request_text, RECENT)
    assert snapped == {"path": "groceries.txt", "text": "coffee"}


@pytest.mark.parametrize(
    "name", ["file", "filename", "dir", "directory", "target_path", "source_file", "Path"]
)
def test_every_path_parameter_is_a_path(name: str) -> None:
    request = "What's in it now?"
    assert snap_arguments({name: "docs/guide.md"}, [request], request, RECENT) == {name: "groceries.txt"}


@pytest.mark.parametrize(
    ("request_text", "arguments"),
    [
        ("Now write it to coffee.txt", {"path": "coffee.txt"}),  # a new file the request names
        ("Copy it into backup/", {"path": "backup/groceries.txt"}),  # a folder it names
        ("Add coffee to my shopping list", {"path": "coffee.txt"}),  # no word refers back
        ("Edit the list and add coffee", {"path": "coffee.txt"}),  # "edit" holds no "it"
        ("Write a note that says hello", {"path": "note.txt"}),  # "that" begins a clause
        ("Is there a file about coffee?", {"path": "coffee.txt"}),  # "there" points nowhere
        ("Add coffee to it", {"text": "coffee.txt"}),  # no path parameter
        ("Add coffee to it", {"path": "config/settings.ini"}),  # an older path the conversation used
        ("Add it to my notes", {"path": "notes"}),  # a word of the request
    ],
)
def test_a_path_stays_unless_the_request_refers_back_and_names_none(
    request_text: str, arguments: dict[str, Any]
) -> None:
    assert snap_arguments(arguments, [request_text], request_text, RECENT) == arguments


def test_a_near_copy_of_the_file_a_referring_request_names_is_snapped_to_it_not_away() -> None:
    request = "Now write it to coffee.txt"
    assert snap_arguments({"path": "cofee.txt"}, [request], request, RECENT) == {"path": "coffee.txt"}


def test_with_no_path_used_before_a_made_up_path_stays() -> None:
    request = "Now add coffee to it"
    assert snap_arguments({"path": "coffee.txt"}, [request], request, []) == {"path": "coffee.txt"}


def step(arguments: dict[str, Any], result: str = "ok", is_error: bool = False) -> AgentStep:
    return AgentStep("tool", arguments, result, is_error)


def turn(*steps: AgentStep) -> PastTurn:
    return PastTurn("earlier", steps, "done", "answered")


def test_recent_paths_are_this_runs_calls_then_each_earlier_turns_calls_then_its_results() -> None:
    earlier = [
        turn(step({"path": "old.txt"})),
        turn(
            step({"query": "database"}, "config/settings.ini, line 6: [database]\nsrc/db.py, line 2: x"),
            step({"path": "first.txt", "n": 2}),
            step({"path": "second.txt"}),
        ),
    ]
    this_run = [step({"path": "."}), step({"file": "now.md"})]
    assert recent_paths(this_run, earlier) == [
        "now.md",  # this run's own call
        "second.txt",  # the last turn's calls, latest first
        "first.txt",
        "src/db.py",  # then the files its results name, latest first
        "config/settings.ini",
        "old.txt",  # then the turn before
    ]


def test_a_turns_results_give_its_path_when_its_calls_took_none() -> None:
    earlier = [turn(step({"query": "database"}, "config/settings.ini, line 6: [database]"))]
    assert recent_paths([], earlier) == ["config/settings.ini"]


def test_failed_calls_give_no_recent_path() -> None:
    earlier = [turn(step({"path": "groceries.txt"}), step({"path": "coffee.txt"}, "not found", True))]
    assert recent_paths([], earlier) == ["groceries.txt"]
