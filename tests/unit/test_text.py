"""Outside text shown to a person: control, format and invisible characters are made visible."""

from __future__ import annotations

import ast
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_agent.common.text import quoted, visible

HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"}
# Any code point at all, lone surrogates and unassigned ones included.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))


def hidden_in(text: str, keep: str = "") -> list[str]:
    return [char for char in text if char not in keep and unicodedata.category(char) in HIDDEN]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2K\rread-only", "\\x1b[2K\\rread-only"),  # erase the line, back to its start
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # retitle the terminal
        ("ab\x08\x08cd\x7f", "ab\\x08\\x08cd\\x7f"),  # backspaces, DEL
        ("a\x85b\u2028c\u2029d", "a\\x85b\\u2028c\\u2029d"),  # line ends that are not \n
        ("rw\u202eor-daer", "rw\\u202eor-daer"),  # a right-to-left override
        ("\u2066x\u2069\u200e", "\\u2066x\\u2069\\u200e"),  # isolates, a direction mark
        ("ad\u200bmin\ufeff\u00ad", "ad\\u200bmin\\ufeff\\xad"),  # zero-width, BOM, soft hyphen
        ("tag\U000e0041", "tag\\U000e0041"),  # an invisible tag character
        ("\ud800 \u0378", "\\ud800 \\u0378"),  # a lone surrogate, an unassigned code point
        ("a\tb\nc", "a\\tb\\nc"),
    ],
)
def test_hidden_characters_are_written_as_escapes(text: str, shown: str) -> None:
    assert visible(text) == shown


@pytest.mark.parametrize("text", ["plain", "héllo wörld 日本語 ✓ 🙂", "C:\\path\\x1b", "a b\u00a0c", ""])
def test_what_a_person_can_see_is_left_as_it_is(text: str) -> None:
    assert visible(text) == text


def test_kept_characters_stay_and_the_rest_are_escaped() -> None:
    output = "line 1\n\tindented\x1b[31m red\nover\rwritten"
    assert visible(output, keep="\n\t") == "line 1\n\tindented\\x1b[31m red\nover\\rwritten"


def test_a_crlf_line_end_stays_when_newlines_are_kept_and_a_bare_cr_does_not() -> None:
    assert visible("a\r\nb\r\n", keep="\n") == "a\r\nb\r\n"
    assert visible("a\r\r\nb\r", keep="\n") == "a\\r\r\nb\\r"
    assert visible("a\r\nb") == "a\\r\\nb"


@given(ANY_TEXT)
def test_nothing_hidden_is_left_in_any_text(text: str) -> None:
    assert hidden_in(visible(text)) == []
    kept = visible(text, keep="\n\t")
    assert hidden_in(kept.replace("\r\n", "\n"), keep="\n\t") == []


@given(ANY_TEXT)
def test_quoted_text_reads_back_as_exactly_the_text(text: str) -> None:
    """Nothing in it can close the quotes early, and two strings never look the same: a literal
    backslash-x-1-b is not an escape character."""
    shown = quoted(text)
    assert hidden_in(shown) == []
    assert ast.literal_eval(shown) == text


def test_quoted_text_cannot_pass_for_the_words_around_it() -> None:
    sneaky = "/tmp/x' (at '/data'); read-only access to '/tmp/harmless"
    assert quoted(sneaky) == "'/tmp/x\\' (at \\'/data\\'); read-only access to \\'/tmp/harmless'"
    assert quoted("\\x1b") != quoted("\x1b")
