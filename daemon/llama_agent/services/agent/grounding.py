"""A call's arguments held to what the person said and what the tools returned.

A small model fills a call's arguments with what is nearest to hand in its prompt, not with what
the request means. Near-copies are snapped back to what they copy (snapping.py); what is left here
are values nobody gave, each mended in the one way that keeps the call to what was said:

* **The whole request, copied into a text argument**, quotes and all: `echo` given "Can you echo
  'pineapple pizza' back to me?". When a string argument is the request itself and the request
  quotes exactly one span, the span is what it meant.
* **A part of a result, copied whole**: "echo back its first word" gives `echo` the whole first
  line of the file; "print its second line" gives `print` the words `second line`. When the
  request counts a line or a word ("the second line", "its first word", outside quotes) and a
  text argument copies a result, or the count's own words, it becomes that line or word of the
  result (of the latest result, for the count's words).
* **A path nobody named**: `projects` for "my project folder", `data/data/data.txt` for "data/",
  `meetings/monday.txt` for "reminders/monday.txt". A path argument found in no request, no
  result and no earlier call becomes the one file or folder the request names, unless it is made
  of the request's words (`backup/notes.txt` for "copy notes.txt to the backup folder" is a new
  path); if the request names none (or several), an optional path is left out, so the tool takes
  its default (the workspace root), and a required one is kept (it may be a new file).
* **A folder where a file was meant**: "open the second file in it" after a listing of `src`
  gives `read_file` the path `src`. A path that another tool listed, when the request names one of
  the listed files or counts them ("the second file"), becomes that file in that folder.
* **A flag the request names, left out**: "Add the line '- [ ] Call the bank' to the end of
  TODO.md" made `write_file` without `append`, which replaced the file. An optional flag
  (a boolean, false unless given) that the call leaves out is set when the request says its name
  (`append`) or the verb its description opens with ("Add to the end of the file...").
* **Numbers nobody said**: `start_line` 296 and `end_line` 498 copied from a listing's sizes. An
  optional number that is in no request (as digits or as a word: "second", "ten"; "the second
  file" counts files, and says no line) and no `path:line:` reference of a result (what a search
  gives) is left out, so the tool takes its default: the whole file rather than lines no one
  asked for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_agent.services.agent.history import AgentStep, PastTurn
from llama_agent.services.agent.snapping import FILE_NAME, SENTENCE_MARKS, names_file, path_parameter

log = logging.getLogger(__name__)

# A span the request quotes: 'like this', "like this", or in typographic quotes. A single quote
# opens only after a non-word character, so "what's" and "don't" quote nothing.
QUOTED = re.compile(
    r"(?<!\w)'([^'\n]+)'(?!\w)|\"([^\"\n]+)\"|\u201c([^\u201d\n]+)\u201d|\u2018([^\u2019\n]+)\u2019"
)
# `notes.txt:12: ...`, `notes.txt:12:` and `notes.txt, line 12`: a result pointing at a line.
LINE_REFERENCE = re.compile(r"[\w./-]+:(\d+):|\bline (\d+)\b")
NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.]\d)")
_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]  # fmt: skip
_ORDINALS = [
    "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth", "twentieth",
]  # fmt: skip
WORD_NUMBERS = {word: value for words in (_NUMBER_WORDS, _ORDINALS) for value, word in enumerate(words)}
# "the second file", "the 2nd one", "the last entry": a file counted in a listing.
COUNTED = re.compile(
    r"\b(?P<ordinal>" + "|".join(_ORDINALS[1:]) + r"|last|\d+(?:st|nd|rd|th))\s+(?:\w+\s+){0,2}?"
    r"(?:file|one|entry|item|script|document)s?\b",
    re.IGNORECASE,
)
# "its second line", "the first word": a part of a result, counted.
PART = re.compile(
    r"\b(?P<ordinal>" + "|".join(_ORDINALS[1:]) + r"|last|\d+(?:st|nd|rd|th))\s+(?P<unit>word|line)\b",
    re.IGNORECASE,
)
# A listing's line: a name and its size in brackets.
SIZED_ENTRY = re.compile(r"(.+?)/? \(\d[\d,.]*\s*(?:bytes?|B|[KMGT]i?B)\)")
# Paths that name the workspace itself: never made up.
ROOTS = frozenset({"", ".", "./", "/"})


@dataclass(frozen=True)
class Listing:
    """What a call listed: the tool that listed, the folder (its path argument), the names in the
    order they came."""

    tool: str
    folder: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Said:
    """What a call may take its values from: the requests (this one first), the tools' results
    (this run's and the conversation's), and the listings among those results."""

    request: str
    earlier_requests: Sequence[str] = ()
    results: Sequence[str] = ()
    listings: Sequence[Listing] = field(default_factory=tuple)
    paths: Sequence[str] = ()  # the path arguments of the calls that succeeded

    @property
    def requests(self) -> list[str]:
        return [self.request, *self.earlier_requests]


def said_in_run(request: str, steps: Sequence[AgentStep], earlier: Sequence[PastTurn]) -> Said:
    """What this run's calls may take their values from: the request, this run's results, and
    the conversation's requests and results (`earlier`, oldest first)."""
    all_steps = [*(step for turn in earlier for step in turn.steps), *steps]
    return Said(
        request=request,
        earlier_requests=[turn.request for turn in earlier],
        results=[step.result for step in all_steps if not step.is_error],
        listings=tuple(listing for step in reversed(all_steps) if (listing := _listing(step))),
        paths=[path for step in all_steps if not step.is_error for path in _paths(step)],
    )


def ground_arguments(
    tool: str, arguments: dict[str, Any], schema: Mapping[str, Any], said: Said
) -> dict[str, Any]:
    """`arguments` with each value nobody gave mended as the module says; the rest as it was."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    grounded = dict(arguments)
    for name, value in arguments.items():
        optional = name not in required and name in properties
        mended = _grounded(tool, name, value, optional, properties.get(name, {}), said)
        if mended is None:
            log.debug("%s=%r was said nowhere: left to the tool's default", name, value)
            del grounded[name]
        elif mended != value:
            log.debug("%s=%r was said nowhere: %r", name, value, mended)
            grounded[name] = mended
    for name in _flags_named(properties, required, arguments, said.request):
        log.debug("%s left out, but the request names it: true", name)
        grounded[name] = True
    return grounded


def _flags_named(
    properties: Mapping[str, Any], required: set[str], arguments: Mapping[str, Any], request: str
) -> list[str]:
    """The optional flags (booleans, false unless given) the call leaves out although the request
    names them: by their name (`append`) or by the verb their description opens with ("Add to
    the end of the file"), as a whole word."""
    words = {word.casefold() for word in re.findall(r"[A-Za-z]+", request)}
    named = []
    for name, schema in properties.items():
        if (
            name in arguments
            or name in required
            or schema.get("type") != "boolean"
            or schema.get("default", False)
        ):
            continue
        verb = next(iter(re.findall(r"[A-Za-z]+", schema.get("description", ""))), "")
        spelt = r"\b" + r"[\s_-]".join(map(re.escape, name.split("_"))) + r"\b"
        if re.search(spelt, request, re.IGNORECASE) or verb.casefold() in words:
            named.append(name)
    return named


def _grounded(tool: str, name: str, value: Any, optional: bool, schema: Mapping[str, Any], said: Said) -> Any:
    """`value` mended, or None to leave it out."""
    if isinstance(value, str):
        return _path(tool, value, optional, said) if path_parameter(name) else _text(value, said)
    if isinstance(value, int | float) and not isinstance(value, bool):
        unsaid = optional and value != schema.get("default") and not _number_said(value, said)
        return None if unsaid else value
    return value


def _text(value: str, said: Said) -> str:
    """The one span the request quotes, if `value` is the whole request; else the part of a
    result the request counts, if `value` is that result or the count itself; else `value`."""
    spans = _quoted(said.request)
    if _bare(value) == _bare(said.request):
        return spans[0] if len(spans) == 1 else value
    return _counted_part(value, said, spans) or value


def _quoted(text: str) -> list[str]:
    return [next(part for part in match.groups() if part) for match in QUOTED.finditer(text)]


def _counted_part(value: str, said: Said, quoted: Sequence[str]) -> str | None:
    """The line or word of a result that the request counts ("its second line", "the first
    word"), when `value` copies more of that result, or copies the count's own words."""
    counted = PART.search(said.request)
    if counted is None or not said.results or any(counted.group(0) in span for span in quoted):
        return None
    if _bare(value) in _bare(counted.group(0)) or _bare(counted.group(0)) in _bare(value):
        source = said.results[-1]
    else:
        source = next(
            (result for result in reversed(said.results) if value.strip() and value.strip() in result), ""
        )
    parts = source.split() if counted.group("unit").casefold() == "word" else source.splitlines()
    parts = [part for part in parts if part.strip()]
    index = _index(counted.group("ordinal"), len(parts))
    if index is None:
        return None
    part = parts[index].strip()
    return part.strip(SENTENCE_MARKS) if counted.group("unit").casefold() == "word" else part


def _bare(text: str) -> str:
    return text.strip().rstrip(".?!").strip().casefold()


def _path(tool: str, value: str, optional: bool, said: Said) -> str | None:
    """A listed folder's counted or named file; else `value` if it was said; else the one file
    the request names; else nothing, for an optional path."""
    listed = _listed_file(tool, value, said)
    if listed is not None:
        return listed
    if (
        value.strip() in ROOTS
        or value in said.paths
        or any(value in text for text in (*said.requests, *said.results))
    ):
        return value
    named = _named_files(said.request)
    if len(named) == 1 and not _built_from_said(value, said):
        return named[0]
    return None if optional else value


def _built_from_said(path: str, said: Said) -> bool:
    """Whether every part of `path` is a word of a request: `backup/notes.txt` for "copy notes.txt
    to the backup folder" is a new path made of what was said, not a made-up one."""
    words = {word.casefold().rstrip("/") for text in said.requests for word in _words(text)}
    parts = [part.casefold() for part in path.split("/") if part not in ("", ".")]
    return bool(parts) and all(part in words for part in parts)


def _listed_file(tool: str, value: str, said: Said) -> str | None:
    """The file of another tool's listing of folder `value` that the request names or counts."""
    folder = _folder(value)
    listing = next((each for each in said.listings if each.folder == folder and each.tool != tool), None)
    if listing is None or not listing.names:
        return None
    names = {name.casefold(): name for name in listing.names}
    named = [names[word.casefold()] for word in _words(said.request) if word.casefold() in names]
    if len(set(named)) == 1:
        return _joined(folder, named[0])
    counted = COUNTED.search(said.request)
    if counted is None:
        return None
    index = _index(counted.group("ordinal"), len(listing.names))
    return _joined(folder, listing.names[index]) if index is not None else None


def _folder(path: str) -> str:
    return path.strip().rstrip("/").removeprefix("./") or "."


def _joined(folder: str, name: str) -> str:
    return name if folder == "." else f"{folder}/{name}"


def _index(ordinal: str, count: int) -> int | None:
    ordinal = ordinal.casefold()
    if ordinal == "last":
        return count - 1
    place = int(ordinal[:-2]) if ordinal[:-2].isdigit() else WORD_NUMBERS[ordinal]
    return place - 1 if 1 <= place <= count else None


def _named_files(request: str) -> list[str]:
    """The files and folders `request` names (`notes.txt`, `docs/guide.md`, `data/`), once each."""
    named = [word for word in _words(request) if names_file(word)]
    return list(dict.fromkeys(named))


def _number_said(value: float, said: Said) -> bool:
    """Whether a request says `value` (in digits or in words), or a result points at that line."""
    if not float(value).is_integer():
        return any(str(value) in text for text in said.requests)
    number = int(value)
    # "the second file" counts files, not lines: a line number it is not.
    spoken = {each for text in said.requests for each in _numbers(COUNTED.sub(" ", text))}
    found = (match.groups() for text in said.results for match in LINE_REFERENCE.finditer(text))
    pointed = {int(line) for lines in found for line in lines if line}
    return number in spoken | pointed


def _numbers(text: str) -> set[int]:
    """The whole numbers `text` says, in digits or in words ("ten", "second")."""
    words = re.findall(r"[a-z]+", text.casefold())
    in_words = {WORD_NUMBERS[word] for word in words if word in WORD_NUMBERS}
    return {int(digits) for digits in NUMBER.findall(text)} | in_words


def _listing(step: AgentStep) -> Listing | None:
    """The names a successful call with a path argument returned one per line, if every line of
    its result begins with one (`main.js (296 bytes)`, `sub/`): a folder's listing."""
    paths = _paths(step)
    folder = paths[0] if paths else None
    if step.is_error or folder is None:
        return None
    lines = [line.strip() for line in step.result.splitlines() if line.strip()]
    names = [_entry_name(line) for line in lines]
    if not names or any(name is None for name in names):
        return None
    return Listing(step.tool, _folder(folder), tuple(name for name in names if name))


def _paths(step: AgentStep) -> list[str]:
    return [
        value for name, value in step.arguments.items() if path_parameter(name) and isinstance(value, str)
    ]


def _entry_name(line: str) -> str | None:
    """The name a listing's line gives: `Makefile (120 bytes)`, `my notes.txt (3 KiB)`, `sub/`,
    or a first word that names a file (`main.js`); None for a line of anything else."""
    sized = SIZED_ENTRY.fullmatch(line)
    if sized is not None:
        return sized.group(1)
    if line.endswith("/") and "/" not in line[:-1] and line[:-1].strip():
        return line[:-1]
    first = line.split()[0].strip(SENTENCE_MARKS)
    return first if FILE_NAME.fullmatch(first) else None


def _words(text: str) -> list[str]:
    return [word for word in (raw.strip(SENTENCE_MARKS) for raw in text.split()) if word]
