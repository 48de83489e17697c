"""Near-copies in a call's arguments, snapped to the text they copy.

A small model that copies a file name from the request often copies it a little wrong: `todo.md`
for `TODO.md`, `inventory.csv` for `data/inventory.csv`, `reminder/monday.txt` for
`reminders/monday.txt`. A one-word string argument that is no word of the request or the tools'
results, but is very close to exactly one path-like word there (one with a `/` or a `.` inside),
is replaced by that word. Ordinary words are left alone: `colour` is no misspelt `color`, and
`Europe/Paris` no near-copy of `Paris`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

# Characters around a word that are punctuation of the sentence, not part of the word.
SENTENCE_MARKS = "'\"`()[]{}<>,;:!?.\u201c\u201d\u2018\u2019"
# How alike (difflib's ratio) a value and a word must be to count as a near-copy.
MIN_RATIO = 0.9
MIN_LENGTH = 3


def snap_arguments(arguments: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    """`arguments` with each one-word string value that is a near-copy of exactly one word of
    `sources` replaced by that word; every other value as it was."""
    words = set(_words(sources))
    paths = sorted(word for word in words if _path_like(word))
    seen = "\n".join(sources).casefold()
    snapped = dict(arguments)
    for name, value in arguments.items():
        if isinstance(value, str) and _one_word(value) and value not in words:
            snapped[name] = _snap(value, paths, seen)
    return snapped


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
