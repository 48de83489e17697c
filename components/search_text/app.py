"""search_text: lines matching a Python regular expression in the text files under /workspace.

Files are visited in sorted order, so results are stable. Files over 1 MB, files that are not
UTF-8 text, symlinks and version-control directories are skipped.
"""

import os
import posixpath
import re
import stat
import time
from collections.abc import Iterator

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
from workspace import WORKSPACE, no_workspace, os_error, resolve

MAX_FILE_BYTES = 1024 * 1024
MAX_LINE_CHARS = 200
# Twenty lines of up to 200 characters already fill a good part of a small model's context.
DEFAULT_RESULTS, MAX_RESULTS = 20, 100
# Stop before the call's time limit (10 s by default) with what was found so far.
TIME_BUDGET_SECONDS = 6.0
SKIPPED_DIRS = {".git", ".hg", ".svn"}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise Err("the pattern is empty")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise Err(f"invalid regular expression {pattern!r}: {error}") from None


def is_directory(full: str, path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(full).st_mode)
    except OSError as error:
        raise os_error(path, error, "search") from None


def files_under(full: str) -> Iterator[str]:
    """Every file under the directory `full`, sorted, without following symlinks."""
    for directory, subdirectories, names in os.walk(full):
        subdirectories[:] = sorted(name for name in subdirectories if name not in SKIPPED_DIRS)
        for name in sorted(names):
            file = posixpath.join(directory, name)
            if not os.path.islink(file):
                yield file


def text_lines(file: str) -> list[str] | None:
    """The file's lines, or None if it is too big, unreadable, binary or not UTF-8."""
    try:
        if os.stat(file).st_size > MAX_FILE_BYTES:
            return None
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] if text else []


def shorten(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def search(pattern: str, path: str, max_results: int) -> str:
    if not 1 <= max_results <= MAX_RESULTS:
        raise Err(f"max_results must be from 1 to {MAX_RESULTS}, not {max_results}")
    regex = compile_pattern(pattern)
    full = resolve(path, no_workspace("search_text"))
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    hits: list[str] = []
    searched = skipped = 0
    files = files_under(full) if is_directory(full, path) else iter([full])
    for file in files:
        if time.monotonic() > deadline:
            note = f"stopped after {TIME_BUDGET_SECONDS:g} s, {searched} files searched: narrow the path"
            return "\n".join([*hits, f"({note})"])
        lines = text_lines(file)
        if lines is None:
            skipped += 1
            continue
        searched += 1
        relative = posixpath.relpath(file, WORKSPACE)
        for number, line in enumerate(lines, start=1):
            if regex.search(line):
                if len(hits) == max_results:
                    return "\n".join([*hits, f"(stopped after {max_results} matches)"])
                hits.append(f"{relative}:{number}: {shorten(line)}")
    if not hits:
        return (
            f"no matches for {pattern!r} in {path!r} ({searched} files searched, "
            f"{skipped} skipped: binary, not UTF-8 or over 1 MB)"
        )
    return "\n".join(hits)


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="search_text",
            description=(
                "Searches the workspace's text files for lines matching a regular expression; "
                "each match as path:line: text."
            ),
            version="1.1.0",
            params=[
                Param(
                    name="pattern",
                    description=r"A Python regular expression, e.g. def \w+\( or TODO.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=None,
                ),
                Param(
                    name="path",
                    description='A directory or file, relative to the workspace root (default: ".").',
                    type=ParamType.STRING,
                    required=False,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=Value_String("."),
                ),
                Param(
                    name="max_results",
                    description=(
                        f"Stop after this many matches, 1 to {MAX_RESULTS} (default {DEFAULT_RESULTS})."
                    ),
                    type=ParamType.INTEGER,
                    required=False,
                    minimum=1.0,
                    maximum=float(MAX_RESULTS),
                    choices=[],
                    default_value=Value_Integer(DEFAULT_RESULTS),
                ),
            ],
            examples=[
                example(
                    "Which file mentions LOG_LEVEL?",
                    {"pattern": "LOG_LEVEL"},
                    "docs/setup.md:12: set LOG_LEVEL=debug to see more",
                    "docs/setup.md mentions it, on line 12: set LOG_LEVEL=debug to see more",
                ),
                example(
                    "Find the lines that contain 'invoice'.",
                    {"pattern": "invoice"},
                    "mail/march.txt:4: the invoice is due on the 9th",
                    "mail/march.txt, line 4: the invoice is due on the 9th",
                ),
                example(
                    "Search my notes for the word budget.",
                    {"pattern": "budget", "path": "notes"},
                    "notes/plan.md:2: keep the budget under 300",
                    "notes/plan.md, line 2: keep the budget under 300",
                ),
                example(
                    "Where is parse_args defined?",
                    {"pattern": "def parse_args"},
                    "src/cli.py:57: def parse_args(argv):",
                    "It is defined at src/cli.py:57: def parse_args(argv):",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        strings = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_String)}
        numbers = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_Integer)}
        if "pattern" not in strings:
            raise Err("missing required parameter 'pattern'")
        max_results = numbers.get("max_results", DEFAULT_RESULTS)
        return search(strings["pattern"], strings.get("path", "."), max_results)
