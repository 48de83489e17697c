"""Near-copies in a call's arguments, snapped to the text they copy.

A small model that copies a file name from the request often copies it a little wrong: `todo.md`
for `TODO.md`, `inventory.csv` for `data/inventory.csv`, `reminder/monday.txt` for
`reminders/monday.txt`. A one-word string argument that is no word of the request or the tools'
results, but is very close to exactly one path-like word there (one with a `/` or a `.` inside),
is replaced by that word. Ordinary words are left alone: `colour` is no misspelt `color`, and
`Europe/Paris` no near-copy of `Paris`.

A longer copy loses brackets: `12 + 8 * 3 - 5` for the request's `(12 + 8) * 3 - 5`, which is
another number. A string argument that occurs in exactly one source once that source's brackets
are taken out, and nowhere as it is, gets them back.

A copy in other case: `todo` for the request's `TODO` (a search for it then finds nothing), `call
the bank` for `Call the bank`. A string argument found nowhere as it is, but in exactly one
spelling once case is ignored (as whole words), takes that spelling: the person's text, and the
files', are what a call copies.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

# Characters around a word that are punctuation of the sentence, not part of the word.
SENTENCE_MARKS = "'\"`()[]{}<>,;:!?.\u201c\u201d\u2018\u2019"
BRACKETS = {"(": ")", "[": "]", "{": "}"}
BRACKET_CHARS = "".join(BRACKETS) + "".join(BRACKETS.values())
# How alike (difflib's ratio) a value and a word must be to count as a near-copy.
MIN_RATIO = 0.9
MIN_LENGTH = 3


def snap_arguments(arguments: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    """`arguments` with each one-word string value that is a near-copy of exactly one path-like
    word of `sources` replaced by that word, and each other string found in no source replaced by
    the one copy of it there in other case, or else with its brackets back; the rest as it was."""
    words = set(_words(sources))
    paths = sorted(word for word in words if _path_like(word))
    seen = "\n".join(sources).casefold()
    snapped = dict(arguments)
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        if _one_word(value) and value not in words:
            snapped[name] = _snap(value, paths, seen)
        if snapped[name] == value and not any(value in source for source in sources):
            snapped[name] = _spelt_as_in(value, sources) or _with_brackets_back(value, sources)
    return snapped


def _spelt_as_in(value: str, sources: Sequence[str]) -> str | None:
    """The one spelling, other than `value`'s own, in which `sources` hold `value` as whole words
    once case is ignored; else None."""
    if len(value.strip()) < MIN_LENGTH:
        return None
    # Whole words: `TODO` is not in `TODOS`, nor `README.md` in `docs/README.md`.
    pattern = re.compile(r"(?<![\w/.-])" + re.escape(value) + r"(?![\w/-]|\.\w)", re.IGNORECASE)
    spellings = {match.group() for source in sources for match in pattern.finditer(source)}
    return spellings.pop() if len(spellings) == 1 else None


def _with_brackets_back(value: str, sources: Sequence[str]) -> str:
    """The span of `sources` that `value` copies without its brackets, if there is exactly one
    (balanced, and with brackets in it); else `value`."""
    if len(value) < MIN_LENGTH or any(char in BRACKET_CHARS for char in value):
        return value
    spans = [span for source in sources for span in _bracketed_spans(value, source)]
    return spans[0] if len(spans) == 1 else value


def _bracketed_spans(value: str, source: str) -> list[str]:
    kept = [index for index, char in enumerate(source) if char not in BRACKET_CHARS]
    stripped = "".join(source[index] for index in kept)
    spans = []
    start = stripped.find(value)
    while start >= 0:
        first, last = kept[start], kept[start + len(value) - 1] + 1
        span = _balanced(source, first, last)
        if span is not None and span != value:
            spans.append(span)
        start = stripped.find(value, start + 1)
    return spans


def _balanced(source: str, first: int, last: int) -> str | None:
    """source[first:last], widened over the brackets just outside it that close or open the
    ones inside; None if it cannot be made balanced that way."""
    while True:
        span = source[first:last]
        missing = _unbalanced(span)
        if missing is None:
            return None
        if not missing:
            return span
        if missing == "open" and first > 0 and source[first - 1] in BRACKETS:
            first -= 1
        elif missing == "close" and last < len(source) and source[last] in BRACKETS.values():
            last += 1
        else:
            return None


def _unbalanced(span: str) -> str | None:
    """Empty if the brackets of `span` pair up, "open" if it lacks an opening one at its start,
    "close" if it lacks a closing one at its end, None if they cross."""
    stack: list[str] = []
    for char in span:
        if char in BRACKETS:
            stack.append(BRACKETS[char])
        elif char in BRACKETS.values():
            if not stack:
                return "open"
            if stack.pop() != char:
                return None
    return "close" if stack else ""


def _one_word(value: str) -> bool:
    return len(value) >= MIN_LENGTH and not any(char.isspace() for char in value)


def _path_like(word: str) -> bool:
    return "/" in word or "." in word


def _words(sources: Iterable[str]) -> Iterable[str]:
    for source in sources:
        for word in source.split():
            word = word.strip(SENTENCE_MARKS)
            if len(word) >= MIN_LENGTH:
                yield word


def _snap(value: str, words: list[str], seen: str) -> str:
    """The one word `value` nearly copies, trying the surest kind of likeness first."""
    for alike in (_same_but_case, _same_file, _nearly_same):
        matches = [word for word in words if alike(value, word, seen)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            return value  # ambiguous: leave the model's value
    return value


def _same_but_case(value: str, word: str, seen: str) -> bool:
    return value.casefold() == word.casefold()


def _same_file(value: str, word: str, seen: str) -> bool:
    """One is the other with directories added or dropped: `x.csv` for `data/x.csv`, or
    `docs/x.md` for `x.md` when nothing seen names `docs` (if something does, say a listing or
    "the docs folder", the model may know better than the request)."""
    value, word = value.casefold(), word.casefold()
    if word.endswith("/" + value):
        return True
    directories = value[: -len(word) - 1]
    return value.endswith("/" + word) and all(part not in seen for part in directories.split("/") if part)


def _nearly_same(value: str, word: str, seen: str) -> bool:
    return difflib.SequenceMatcher(None, value, word).ratio() >= MIN_RATIO
