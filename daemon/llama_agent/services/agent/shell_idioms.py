"""Shell commands people type to an agent, said in words for the router.

People who live in a terminal ask in its language: `cat config.toml`, `head -n 20 main.py`,
`grep -rn TODO src/`, `echo 'milk' >> list.txt`, `TZ=Asia/Tokyo date`. The router's small model
reads such a line by its surface: the word `echo` draws it to the echo tool, a path to the tool
that lists folders. Shots of shell commands do not teach it the idioms (routing.py, SHOTS_PER_TOOL),
but the idioms are few and well known: a command line the router knows is routed as what it asks
for, in plain words ("Show me the contents of the file config.toml"), and among whatever tools
are offered. Only routing sees the words; the model's call still reads the request as typed, so
its arguments copy the person's text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

# Words of sentences, not of command lines: "find where init_db is defined" is English.
# fmt: off
_SENTENCE_WORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "for", "in", "of", "on", "to", "from", "with", "by", "at",
    "as", "is", "are", "was", "be", "it", "its", "this", "that", "these", "those", "me", "my", "i",
    "you", "your", "we", "our", "please", "can", "could", "would", "will", "what", "where", "which",
    "who", "how", "why", "when", "there", "then", "any", "all", "some", "show", "tell",
))
# fmt: on
# Commands that are also everyday words: "date night ideas", "tree planting tips", "more tea".
_ENGLISH = frozenset(
    {"cat", "less", "more", "type", "head", "tail", "tree", "dir", "find", "date", "touch", "nl"}
)
# An argument only a command line has: a path, a file name with its extension, a glob, a number.
_TECHNICAL = re.compile(r"[/*~]|\.\w+$|^\d+$|^\.")
# `sudo`, environment assignments and `command`/`env` before the command itself.
_PREFIX = re.compile(r"^\s*(?:sudo\s+|env\s+|command\s+)*((?:[A-Za-z_]\w*=\S*\s+)*)")
_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)=(\S*)")
# echo/printf with a redirection into a file: a write, not an echo.
_REDIRECT = re.compile(
    r"^(?:echo|printf)\b\s*(?:-[neE]+\s+)*(?P<text>.*?)\s*(?P<op>>>?)\s*(?P<file>[^\s>]+)\s*$", re.DOTALL
)
_TEE = re.compile(r"^tee\b\s*(?P<append>-a\s+)?(?P<file>\S+)\s*(?:<<<\s*(?P<text>.*))?$", re.DOTALL)
_HERE_STRING = re.compile(r"^(?P<command>bc|expr|calc|python3?\s+-c)\b.*?<<<\s*(?P<text>.*)$", re.DOTALL)


def in_words(clause: str) -> str:
    """`clause` said in words if it is a shell command line the router knows; else as it is."""
    prefix = _PREFIX.match(clause)
    assert prefix is not None  # the pattern matches the empty string
    assignments = dict(_ASSIGNMENT.findall(prefix.group(1)))
    line = clause[prefix.end() :].strip()
    for paraphrase in (_written, _here_string):
        said = paraphrase(line)
        if said is not None:
            return said
    words = _split(line)
    if words[:2] == ["git", "grep"]:
        words = words[1:]
    if not words or not _command_line(words):
        return clause
    command, operands = words[0], [word for word in words[1:] if not word.startswith("-")]
    said = _COMMANDS[command](words[1:], operands, assignments)  # known: _command_line
    return clause if said is None else said


def _command_line(words: list[str]) -> bool:
    """Whether `words` read as a command line rather than a sentence that starts with a word
    like "find", "head" or "date": no sentence's little words among them, and for a command that
    is also an English word, a flag, a path or a number, or nothing after it."""
    command, arguments = words[0], words[1:]
    if command not in _COMMANDS or any(word.casefold() in _SENTENCE_WORDS for word in arguments):
        return False
    if command not in _ENGLISH or not arguments:
        return True
    return any(word.startswith("-") or _TECHNICAL.search(word) for word in arguments)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unclosed quote: not a command line
        return []


def _written(line: str) -> str | None:
    """`echo 'x' >> f`, `printf 'x' > f`, `tee -a f <<< 'x'`: text into a file."""
    redirect = _REDIRECT.match(line)
    if redirect is not None:
        text, file = redirect.group("text"), redirect.group("file")
        return _write_words(text, file, append=redirect.group("op") == ">>")
    tee = _TEE.match(line)
    if tee is not None and tee.group("text"):
        return _write_words(tee.group("text"), tee.group("file"), append=bool(tee.group("append")))
    return None


def _write_words(text: str, file: str, append: bool) -> str:
    if append:
        return f"Add the line {text.strip()} to the end of the file {file}."
    return f"Write {text.strip()} into the file {file}."


def _here_string(line: str) -> str | None:
    """`bc <<< '2^10'`: a calculation."""
    match = _HERE_STRING.match(line)
    return None if match is None else f"Calculate {match.group('text').strip()}."


Paraphrase = Callable[[list[str], list[str], dict[str, str]], "str | None"]


def _show(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    return f"Show me the contents of the file {' '.join(operands)}." if operands else None


def _lines(which: str) -> Paraphrase:
    def say(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
        files = [word for word in operands if not word.isdigit()]
        count = next((word for word in operands if word.isdigit()), None)
        count = count or next(
            (word.lstrip("-n") for word in arguments if re.fullmatch(r"-n?\d+", word)), None
        )
        if not files:
            return None
        lines = f"{which} {count} lines" if count else f"{which} lines"
        return f"Show me the {lines} of the file {' '.join(files)}."

    return say


def _sed(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    if "-n" not in arguments or len(operands) < 2:
        return None
    span = re.fullmatch(r"(\d+)(?:,(\d+))?p", operands[0])
    if span is None:
        return None
    first, last = span.group(1), span.group(2) or span.group(1)
    return f"Show me lines {first} to {last} of the file {' '.join(operands[1:])}."


def _list(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    return (
        f"List the files in the folder {' '.join(operands)}."
        if operands
        else "List the files in this folder."
    )


def _listing(folders: list[str]) -> str:
    named = [folder for folder in folders if folder not in (".", "./")]
    return f"List the files in the folder {' '.join(named)}." if named else "List the files in this folder."


def _search(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    if not operands:
        return None
    pattern, *where = operands
    place = f" in {' '.join(where)}" if where else ""
    return f"Search the files{place} for the text {pattern}."


def _find(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    return _listing(operands[:1])


def _date(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    zone = assignments.get("TZ")
    return f"What is the date and time in {zone} now?" if zone else "What is the date and time now?"


def _calculate(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    return f"Calculate {' '.join(arguments)}." if arguments else None


def _touch(arguments: list[str], operands: list[str], assignments: dict[str, str]) -> str | None:
    return f"Create an empty file {' '.join(operands)}." if operands else None


_COMMANDS: dict[str, Paraphrase] = {
    **dict.fromkeys(("cat", "less", "more", "bat", "nl", "type"), _show),
    "head": _lines("first"),
    "tail": _lines("last"),
    "sed": _sed,
    **dict.fromkeys(("ls", "ll", "dir", "tree", "exa", "eza"), _list),
    **dict.fromkeys(("grep", "egrep", "rg", "ag", "ack"), _search),
    "find": _find,
    "date": _date,
    **dict.fromkeys(("expr", "bc"), _calculate),
    "touch": _touch,
}
