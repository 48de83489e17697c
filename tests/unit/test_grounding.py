"""Arguments nobody gave (services/agent/grounding.py): the whole request copied, made-up paths, a
folder where a listed file was meant, numbers nobody said."""

from __future__ import annotations

from typing import Any

import pytest
from llama_agent.services.agent.grounding import ground_arguments, said_in_run
from llama_agent.services.agent.history import AgentStep, PastTurn

ECHO = {"properties": {"value": {"type": "string"}}, "required": ["value"]}
LIST_DIR = {"properties": {"path": {"type": "string", "default": "."}}, "required": []}
SEARCH = {
    "properties": {
        "pattern": {"type": "string"},
        "path": {"type": "string", "default": "."},
        "max_results": {"type": "integer", "default": 20},
    },
    "required": ["pattern"],
}
READ = {
    "properties": {
        "path": {"type": "string"},
        "start_line": {"type": "integer", "default": 1},
        "end_line": {"type": "integer"},
    },
    "required": ["path"],
}
WRITE = {
    "properties": {"path": {"type": "string"}, "content": {"type": "string"}, "append": {"type": "boolean"}},
    "required": ["path", "content"],
}
SRC_LISTING = AgentStep("list_dir", {"path": "src"}, "main.js (296 bytes)\nutils.js (498 bytes)\nlib/", False)


def _ground(
    tool: str,
    arguments: dict[str, Any],
    schema: dict[str, Any],
    request: str,
    steps: tuple[AgentStep, ...] = (),
    earlier: tuple[PastTurn, ...] = (),
) -> dict[str, Any]:
    return ground_arguments(tool, arguments, schema, said_in_run(request, steps, earlier))


@pytest.mark.parametrize(
    ("request_text", "span"),
    [
        ("Can you echo 'pineapple pizza' back to me?", "pineapple pizza"),
        ('Say "hello there" back.', "hello there"),
        ("Repeat \u201cgood night\u201d", "good night"),
    ],
)
def test_a_text_argument_copying_the_whole_request_becomes_its_one_quoted_span(
    request_text: str, span: str
) -> None:
    assert _ground("echo", {"value": request_text}, ECHO, request_text) == {"value": span}


@pytest.mark.parametrize(
    ("value", "request_text"),
    [
        ("Can you echo it back?", "Can you echo it back?"),  # nothing quoted
        ("Echo 'a' and 'b'", "Echo 'a' and 'b'"),  # two spans: which one?
        ("What's new? Don't know", "What's new? Don't know"),  # apostrophes quote nothing
        ("pineapple", "Can you echo 'pineapple pizza' back to me?"),  # not the whole request
        ("She said 'hi' to me", "Echo: She said 'hi' to me"),  # a part of it, quotes and all
    ],
)
def test_other_text_is_left_alone(value: str, request_text: str) -> None:
    assert _ground("echo", {"value": value}, ECHO, request_text) == {"value": value}


def test_a_made_up_path_becomes_the_one_file_the_request_names() -> None:
    request = "Put 'Meeting at 10' into a new file reminders/monday.txt."
    grounded = _ground(
        "write_file", {"path": "meetings/monday.txt", "content": "Meeting at 10"}, WRITE, request
    )
    assert grounded == {"path": "reminders/monday.txt", "content": "Meeting at 10"}
    listing = _ground(
        "list_dir", {"path": "data/data/data.txt"}, LIST_DIR, "Show me the directory listing of data/."
    )
    assert listing == {"path": "data/"}


def test_a_made_up_optional_path_is_left_to_the_tool_s_default() -> None:
    assert _ground("list_dir", {"path": "projects"}, LIST_DIR, "What files are in my project folder?") == {}
    request = "Where did I write down the Wi-Fi password? Search my files for it."
    assert _ground("search_text", {"pattern": "pass", "path": "wifi_password"}, SEARCH, request) == {
        "pattern": "pass"
    }


SEARCH_HIT = AgentStep("search_text", {"pattern": "x"}, "config/settings.ini:6: x", False)


@pytest.mark.parametrize(
    ("tool", "arguments", "request_text", "steps"),
    [
        (
            "write_file",
            {"path": "backup/notes.txt", "content": "x"},
            "Copy notes.txt to the backup folder",
            (),
        ),
        (
            "write_file",
            {"path": "both.txt", "content": "x"},
            "Put a.txt and b.txt into one file",
            (),
        ),  # which?
        ("write_file", {"path": "summary.txt", "content": "x"}, "Write a summary of it", ()),  # may be new
        ("list_dir", {"path": "docs"}, "List the docs folder", ()),  # said
        ("list_dir", {"path": "."}, "List everything", ()),  # the workspace itself
        ("read_file", {"path": "config/settings.ini"}, "Open it", (SEARCH_HIT,)),  # in a result
    ],
)
def test_a_path_that_was_said_or_may_be_new_is_kept(
    tool: str, arguments: dict[str, Any], request_text: str, steps: tuple[AgentStep, ...]
) -> None:
    schema = {"write_file": WRITE, "list_dir": LIST_DIR, "read_file": READ}[tool]
    assert _ground(tool, arguments, schema, request_text, steps) == arguments


@pytest.mark.parametrize(
    ("request_text", "path"),
    [
        ("Look in the src folder, then open main.js and tell me what it does.", "src/main.js"),
        ("open the second file in it", "src/utils.js"),
        ("read the 1st file there", "src/main.js"),
        ("and the last one?", "src/lib"),
    ],
)
def test_a_folder_another_tool_listed_becomes_the_file_the_request_names_or_counts(
    request_text: str, path: str
) -> None:
    grounded = _ground("read_file", {"path": "src"}, READ, request_text, (SRC_LISTING,))
    assert grounded == {"path": path}


def test_a_listed_folder_is_kept_when_no_file_is_meant() -> None:
    # The same tool listing it again, or a search in it, or a count out of range.
    assert _ground("list_dir", {"path": "src"}, LIST_DIR, "open the second file in it", (SRC_LISTING,)) == {
        "path": "src"
    }
    assert _ground(
        "search_text", {"pattern": "x", "path": "src"}, SEARCH, "search src for x", (SRC_LISTING,)
    ) == {
        "pattern": "x",
        "path": "src",
    }
    assert _ground("read_file", {"path": "src"}, READ, "the ninth file", (SRC_LISTING,)) == {"path": "src"}
    failed = AgentStep("list_dir", {"path": "src"}, "main.js (296 bytes)", True)
    assert _ground("read_file", {"path": "src"}, READ, "open main.js in src", (failed,)) == {"path": "src"}


def test_a_listing_from_the_conversation_counts_too() -> None:
    earlier = PastTurn(
        "list the src folder", (SRC_LISTING,), "src holds main.js, utils.js and lib/.", "answered"
    )
    assert _ground("read_file", {"path": "src"}, READ, "open the second file in it", (), (earlier,)) == {
        "path": "src/utils.js"
    }


def test_line_numbers_nobody_said_are_left_to_the_tool_s_defaults() -> None:
    request = "Look in the src folder, then open main.js and tell me what it does."
    grounded = _ground(
        "read_file", {"path": "src/main.js", "start_line": 296, "end_line": 498}, READ, request
    )
    assert grounded == {"path": "src/main.js"}
    # "the second file" counts files: line 2 is not what it says.
    counted = _ground(
        "read_file", {"path": "src", "start_line": 2, "end_line": 2}, READ, "open the second file"
    )
    assert counted == {"path": "src"}


@pytest.mark.parametrize(
    ("request_text", "lines", "steps"),
    [
        ("Show lines 2 to 4 of notes.txt", (2, 4), ()),
        ("Read notes.txt and echo its first word", (1, 1), ()),
        ("the first ten lines of notes.txt", (1, 10), ()),
        (
            "show me that line",
            (6, 6),
            (AgentStep("search_text", {"pattern": "db"}, "notes.txt:6: db = x", False),),
        ),
    ],
)
def test_line_numbers_said_or_pointed_at_are_kept(
    request_text: str, lines: tuple[int, int], steps: tuple[AgentStep, ...]
) -> None:
    arguments = {"path": "notes.txt", "start_line": lines[0], "end_line": lines[1]}
    assert _ground("read_file", arguments, READ, request_text, steps) == arguments


def test_required_and_default_numbers_are_kept() -> None:
    schema = {"properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert _ground("t", {"n": 77}, schema, "do it") == {"n": 77}
    assert _ground("search_text", {"pattern": "x", "max_results": 20}, SEARCH, "find x") == {
        "pattern": "x",
        "max_results": 20,
    }


NOTES = "Remember to water the plants on Friday.\nCall the plumber on Tuesday.\nThe offsite is in Lisbon.\n"
READ_NOTES = AgentStep("read_file", {"path": "notes.txt"}, NOTES, False)
NOTES_TURN = PastTurn("What is in notes.txt?", (READ_NOTES,), "It says ...", "answered")


def test_a_result_copied_whole_becomes_the_part_the_request_counts() -> None:
    first_line = AgentStep("read_file", {"path": "notes.txt", "end_line": 1}, NOTES.splitlines()[0], False)
    request = "Read notes.txt and then echo back its first word."
    assert _ground("echo", {"value": first_line.result}, ECHO, request, (first_line,)) == {
        "value": "Remember"
    }
    assert _ground("echo", {"value": NOTES}, ECHO, "echo the last line of it", (READ_NOTES,)) == {
        "value": "The offsite is in Lisbon."
    }


@pytest.mark.parametrize("value", ["second line", "its second line", "Second line."])
def test_the_count_s_own_words_become_that_part_of_the_latest_result(value: str) -> None:
    assert _ground("echo", {"value": value}, ECHO, "Print its second line", (), (NOTES_TURN,)) == {
        "value": "Call the plumber on Tuesday."
    }


@pytest.mark.parametrize(
    ("value", "request_text"),
    [
        ("hello", "Print its second line"),  # copies neither a result nor the count
        ("the first word", "Echo 'the first word'"),  # the count is quoted: it is the text
        ("second line", "Print the second line"),  # ... but with no result before it
    ],
)
def test_text_that_copies_no_counted_result_is_left_alone(value: str, request_text: str) -> None:
    earlier = (NOTES_TURN,) if request_text != "Print the second line" else ()
    assert _ground("echo", {"value": value}, ECHO, request_text, (), earlier) == {"value": value}


WRITE_WITH_FLAG = {
    "properties": {
        "path": {"type": "string"},
        "content": {"type": "string"},
        "append": {"type": "boolean", "default": False, "description": "Add to the end of the file."},
        "dry_run": {"type": "boolean", "description": "Only say what would be written."},
    },
    "required": ["path", "content"],
}


@pytest.mark.parametrize(
    ("request_text", "flags"),
    [
        ("Add the line 'x' to the end of log.txt, keeping what is there.", {"append": True}),
        ("append x to log.txt", {"append": True}),
        ("Write x to log.txt as a dry run", {"dry_run": True}),
        ("Write x to log.txt", {}),
        ("Write an address book to log.txt", {}),  # "address" is no "add"
    ],
)
def test_a_flag_the_request_names_is_set_when_left_out(request_text: str, flags: dict[str, bool]) -> None:
    arguments = {"path": "log.txt", "content": "x"}
    grounded = _ground("write_file", arguments, WRITE_WITH_FLAG, request_text)
    assert grounded == {**arguments, **flags}


def test_a_flag_the_call_gives_is_left_as_given() -> None:
    arguments = {"path": "log.txt", "content": "x", "append": False}
    assert _ground("write_file", arguments, WRITE_WITH_FLAG, "add x to log.txt") == arguments


def test_a_listing_s_names_may_lack_an_extension_or_hold_spaces() -> None:
    listing = AgentStep("list_dir", {"path": "."}, "Makefile (120 bytes)\nmy notes.txt (3 KiB)\ndocs/", False)
    assert _ground("read_file", {"path": "."}, READ, "show me the first file", (listing,)) == {
        "path": "Makefile"
    }
    assert _ground("read_file", {"path": "."}, READ, "open the second one", (listing,)) == {
        "path": "my notes.txt"
    }
    prose = AgentStep("show_file", {"path": "notes.txt"}, "Call the plumber.\nBuy milk.", False)  # no listing
    assert _ground("read_file", {"path": "notes.txt"}, READ, "the second one", (prose,)) == {
        "path": "notes.txt"
    }
