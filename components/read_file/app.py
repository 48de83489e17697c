"""read_file: the text of a UTF-8 file under /workspace, whole or a range of its lines.

The file is read line by line, so a line range of a large file costs only what precedes it,
and the text handed back is capped at 200 KB.
"""

from collections.abc import Iterator
from typing import BinaryIO

from componentize_py_types import Err
from examples import example
from wit_world import exports
from wit_world.imports.types import (
    Argument,
    Metadata,
    Param,
    ParamType,
    Value_Integer,
    Value_String,
)
from workspace import no_workspace, os_error, resolve

CAP_BYTES = 200 * 1024
# What read_file says about a path beyond what every workspace tool says.
HINTS: dict[type[OSError], str] = {
    IsADirectoryError: "is a directory, not a file (list_dir lists directories)",
    NotADirectoryError: "does not exist: a part of it is a file, not a directory",
}


def lines(file: BinaryIO) -> Iterator[bytes]:
    """The file's lines, newline included. A line longer than the cap comes cut to cap + 1 bytes."""
    while line := file.readline(CAP_BYTES + 1):
        if len(line) > CAP_BYTES and not line.endswith(b"\n"):
            while (rest := file.readline(CAP_BYTES)) and not rest.endswith(b"\n"):
                pass  # skip the rest of an overlong line, without holding it in memory
        yield line


def decode(raw: bytes, path: str, number: int) -> str:
    if b"\0" in raw:
        raise Err(f"{path!r} looks like a binary file (NUL byte on line {number}), not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        raise Err(f"{path!r} is not UTF-8 text: invalid byte 0x{byte:02x} on line {number}") from None


def prefix(raw: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `raw`, cut at a UTF-8 character boundary."""
    end = min(limit, len(raw))
    while 0 < end < len(raw) and raw[end] & 0xC0 == 0x80:
        end -= 1
    return raw[:end]


def with_note(text: str, note: str) -> str:
    return text + ("" if text.endswith("\n") else "\n") + note


def select(file: BinaryIO, path: str, start: int, end: int | None) -> str:
    pieces: list[str] = []
    size = 0
    count = 0
    for count, raw in enumerate(lines(file), start=1):
        if count < start:
            continue
        if end is not None and count > end:
            return "".join(pieces)
        if size + len(raw) > CAP_BYTES:
            if pieces:
                shown = f"lines {start}-{count - 1} shown; read on with start_line={count}"
                return with_note("".join(pieces), f"[cut at 200 KB: {shown}]")
            text = decode(prefix(raw, CAP_BYTES), path, count)
            return with_note(text, f"[cut at 200 KB: line {count} alone is longer than that]")
        pieces.append(decode(raw, path, count))
        size += len(raw)
    if count < start:
        if count == 0 and start == 1:
            return ""
        raise Err(f"start_line {start} is past the end of {path!r}, which has {count} lines")
    return "".join(pieces)


def read(path: str, start: int, end: int | None) -> str:
    if start < 1:
        raise Err(f"start_line must be 1 or more (lines are numbered from 1), not {start}")
    if end is not None and end < start:
        raise Err(f"end_line {end} is before start_line {start}")
    full = resolve(path, no_workspace("read_file"))
    try:
        with open(full, "rb") as file:
            return select(file, path, start, end)
    except OSError as error:
        raise os_error(path, error, "read", HINTS) from None


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="read_file",
            description=(
                "Reads a UTF-8 text file in the workspace, whole or a range of lines "
                "(at most 200 KB of text)."
            ),
            version="1.0.0",
            params=[
                Param(
                    name="path",
                    description="The file, relative to the workspace root.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=None,
                ),
                Param(
                    name="start_line",
                    description="First line to read, counting from 1 (default: 1).",
                    type=ParamType.INTEGER,
                    required=False,
                    minimum=1.0,
                    maximum=None,
                    choices=[],
                    default_value=Value_Integer(1),
                ),
                Param(
                    name="end_line",
                    description="Last line to read, inclusive (default, and at most: the end of the file).",
                    type=ParamType.INTEGER,
                    required=False,
                    minimum=1.0,
                    maximum=None,
                    choices=[],
                    default_value=None,
                ),
            ],
            examples=[
                example(
                    "What does letter.txt say?",
                    {"path": "letter.txt"},
                    "Dear Sam,\nthe parcel arrives on Friday.\n",
                    'letter.txt says: "Dear Sam, the parcel arrives on Friday."',
                ),
                example(
                    "Open recipes/soup.md and tell me the first step.",
                    {"path": "recipes/soup.md"},
                    "# Onion soup\n1. Slice four onions.\n2. Melt the butter.\n",
                    'The first step in recipes/soup.md is: "Slice four onions."',
                ),
                example(
                    "Show me lines 40 to 41 of docs/guide.md.",
                    {"path": "docs/guide.md", "start_line": 40, "end_line": 41},
                    "Step 7: turn the dial.\nStep 8: wait for the green light.\n",
                    'Lines 40-41 of docs/guide.md: "Step 7: turn the dial." and '
                    '"Step 8: wait for the green light."',
                ),
                example(
                    "head -n 2 recipes/soup.md",
                    {"path": "recipes/soup.md", "end_line": 2},
                    "# Onion soup\n1. Slice four onions.\n",
                    "The first 2 lines of recipes/soup.md:\n# Onion soup\n1. Slice four onions.",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        strings = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_String)}
        numbers = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_Integer)}
        if "path" not in strings:
            raise Err("missing required parameter 'path'")
        return read(strings["path"], numbers.get("start_line", 1), numbers.get("end_line"))
