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

A copy in the other number: `grocery.txt` for the request's `groceries.txt`, too unlike as a
whole (difflib's 0.83) to be a near-copy. Tried last, a file name with the same extension, in the
same folder (or none), whose name is nearly the same once both are made singular, is that file.
Plain likeness of the names would not do: `day2.txt` is as like `day1.txt` as `grocery` is
`groceries`, and is another file.

A follow-up that refers back ("Now add coffee to it", "show me that file") names no file, so the
model makes one up: `coffee.txt`, or `docs/guide.md` from the prompt's examples. When the request
refers back (`it`, `that file`, `there`...) and names no file of its own, a path argument (`path`,
`file`, `dir`, `*_path`...) found in no source becomes the path the conversation used last: this
run's calls', then each earlier turn's, newest first (its calls', then the files in its results).
A request that names a file, or does not refer back, keeps the model's path: it may be a new file.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from llama_agent.services.agent.history import AgentStep, PastTurn

log = logging.getLogger(__name__)

# Characters around a word that are punctuation of the sentence, not part of the word.
SENTENCE_MARKS = "'\"`()[]{}<>,;:!?.\u201c\u201d\u2018\u2019"
BRACKETS = {"(": ")", "[": "]", "{": "}"}
BRACKET_CHARS = "".join(BRACKETS) + "".join(BRACKETS.values())
# How alike (difflib's ratio) a value and a word must be to count as a near-copy.
MIN_RATIO = 0.9
MIN_LENGTH = 3
# English plural endings and their singulars, longest first: `groceries` is `grocery`'s plural.
PLURALS = (("ches", "ch"), ("shes", "sh"), ("ies", "y"), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("s", ""))
# Parameters that take a path: a request that refers back refers to one of these.
PATH_PARAMETERS = frozenset({"path", "file", "filename", "directory", "dir"})
# What things the request may call a file it refers back to ("that file", "this one").
_THING = r"(?:file|folder|directory|dir|document|doc|note|list|one)s?"
# Words that refer back to what the conversation spoke of. Whole words, so "edit" holds no "it".
# "that" and "this" only as pronouns (at a clause's end) or before a thing: "a note that says"
# refers to nothing; "there" only as a place: "is there a file", "there are" point nowhere.
REFERRING = re.compile(
    r"\bit\b"
    rf"|\b(?:that|this|same)\s+{_THING}\b"
    r"|\b(?:that|this)\s*(?:[.?!,;:)]|$)"
    r"|\bthe\s+(?:file|folder|directory|document)\b"
    r"|(?<!\bis\s)(?<!\bare\s)\bthere\b(?!['\u2019]s\b|\s+(?:is|are|was|were)\b)",
    re.IGNORECASE,
)
# A word that names a file (`x.txt`, `docs/guide.md`) or a folder (`src/`): not `3.5`, nor `e.g`.
FILE_NAME = re.compile(r"(?:[\w.-]+/)*(?:[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]*|[\w.-]+/)")


def snap_arguments(
    arguments: dict[str, Any],
    sources: Sequence[str],
    request: str = "",
    recent_paths: Sequence[str] = (),
) -> dict[str, Any]:
    """`arguments` with each one-word string value that is a near-copy of exactly one path-like
    word of `sources` replaced by that word, and each other string found in no source replaced by
    the one copy of it there in other case, or else with its brackets back, or else, for a path
    parameter when `request` refers back and names no file, by the first of `recent_paths` (the
    conversation's, most recent first); the rest as it was."""
    words = set(_words(sources))
    paths = sorted(word for word in words if _path_like(word))
    seen = "\n".join(sources).casefold()
    referent = _referent(request, recent_paths)
    snapped = dict(arguments)
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        if _one_word(value) and value not in words:
            snapped[name] = _snap(value, paths, seen)
        if snapped[name] == value and not any(value in source for source in sources):
            snapped[name] = _spelt_as_in(value, sources) or _with_brackets_back(value, sources)
            if snapped[name] == value and referent and path_parameter(name) and value not in recent_paths:
                log.debug("%s %r is named nowhere; the request refers back to %r", name, value, referent)
                snapped[name] = referent
    return snapped


def recent_paths(steps: Sequence[AgentStep], earlier: Sequence[PastTurn]) -> list[str]:
    """The paths the conversation used, most recent first: those this run's calls (`steps`) took,
    latest first; then, turn by turn from the newest of `earlier`, those its calls took, then the
    file names in its results. Failed calls are left out: their path is often the wrong one."""
    paths = _argument_paths(steps)
    for turn in reversed(earlier):
        paths += _argument_paths(turn.steps)
        results = [step.result for step in reversed(turn.steps) if not step.is_error]
        # A search's `config/settings.ini:6:` names the file too.
        words = [_without_line(word) for result in results for word in reversed(list(_words([result])))]
        paths += [word for word in words if names_file(word)]
    return list(dict.fromkeys(paths))


def refers_back(request: str) -> bool:
    """Whether `request` refers to something said before ("add coffee to it", "that file")."""
    return REFERRING.search(request) is not None


def _referent(request: str, recent: Sequence[str]) -> str | None:
    """What a path the model made up should be: the latest path, if `request` refers back to
    something and names no file of its own (one it names may be a new file). Any word with a `/`
    counts as naming one: `data/raw` is a folder, and `and/or` only makes this wary."""
    named = any(names_file(word) or "/" in word for word in _words([request]))
    if not recent or named or not refers_back(request):
        return None
    return recent[0]


def _argument_paths(steps: Sequence[AgentStep]) -> list[str]:
    """The path arguments of `steps`' calls that succeeded, latest first; not `.` or `/`."""
    return [
        value
        for step in reversed(steps)
        if not step.is_error
        for name, value in step.arguments.items()
        if path_parameter(name) and isinstance(value, str) and value.strip(" ./")
    ]


def _without_line(word: str) -> str:
    return re.sub(r":\d+$", "", word)


def path_parameter(name: str) -> bool:
    name = name.casefold()
    return name in PATH_PARAMETERS or name.endswith(("_path", "_file"))


def names_file(word: str) -> bool:
    """Whether `word` looks like a file or folder name (abbreviations like `e.g` do not)."""
    return FILE_NAME.fullmatch(word) is not None and re.fullmatch(r"\w\.\w", word) is None


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
    for alike in (_same_but_case, _same_file, _nearly_same, _same_in_other_number):
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


def _same_in_other_number(value: str, word: str, seen: str) -> bool:
    """Both name a file with the same extension, in the same folder (or `value` in none), and
    their names are nearly the same once made singular: `grocery.txt` for `groceries.txt`."""
    ours, theirs = _file_parts(value), _file_parts(word)
    if ours is None or theirs is None or ours[2] != theirs[2] or ours[0] not in ("", theirs[0]):
        return False
    return _nearly_same(_singular(ours[1]), _singular(theirs[1]), seen)


def _file_parts(path: str) -> tuple[str, str, str] | None:
    """`path`'s folder, name without extension, and extension, in one case; None without one."""
    folder, _, name = path.casefold().rpartition("/")
    stem, dot, extension = name.rpartition(".")
    return (folder, stem, extension) if dot and stem and extension else None


def _singular(word: str) -> str:
    for plural, singular in PLURALS:
        # `class` is no plural, nor is `is`: a singular is left at least two letters.
        if word.endswith(plural) and not word.endswith("ss") and len(word) - len(plural) >= 2:
            return word[: -len(plural)] + singular
    return word
