"""list_dir: the entries of a directory under /workspace, one a line, sorted by name."""

import os

from examples import example
from wit_world import exports
from wit_world.imports.types import (
    Argument,
    Metadata,
    Param,
    ParamType,
    Value_String,
)
from workspace import no_workspace, os_error, resolve

MAX_ENTRIES = 1000
# What list_dir says about a path beyond what every workspace tool says.
HINTS: dict[type[OSError], str] = {NotADirectoryError: "is a file, not a directory (read_file reads files)"}


def describe_entry(entry: os.DirEntry[str]) -> str:
    """`name/` for a directory, `name (N bytes)` for a file; symlinks as what they point to."""
    try:
        if entry.is_dir():
            return entry.name + "/"
        if entry.is_file():
            return f"{entry.name} ({entry.stat().st_size} bytes)"
    except PermissionError:
        return f"{entry.name} (symlink leading outside the workspace)"
    except OSError as error:
        return f"{entry.name} ({error.strerror or 'unreadable'})"
    return f"{entry.name} ({'broken symlink' if entry.is_symlink() else 'special file'})"


def list_dir(path: str) -> str:
    full = resolve(path, no_workspace("list_dir"))
    try:
        with os.scandir(full) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        raise os_error(path, error, "list", HINTS) from None
    if not entries:
        return "(empty directory)"
    lines = [describe_entry(entry) for entry in entries[:MAX_ENTRIES]]
    if len(entries) > MAX_ENTRIES:
        lines.append(f"(showing the first {MAX_ENTRIES} of {len(entries)} entries)")
    return "\n".join(lines)


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="list_dir",
            description=(
                "Lists a directory in the workspace: one entry a line, sorted; directories end "
                "with '/', files show their size in bytes."
            ),
            version="1.0.0",
            params=[
                Param(
                    name="path",
                    description='The directory, relative to the workspace root (default: ".", the root).',
                    type=ParamType.STRING,
                    required=False,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=Value_String("."),
                )
            ],
            examples=[
                example(
                    "What is in the photos folder?",
                    {"path": "photos"},
                    "2019/\nbeach.jpg (48213 bytes)\nindex.txt (96 bytes)",
                    "photos holds a folder, 2019/, and two files: beach.jpg (48213 bytes) "
                    "and index.txt (96 bytes).",
                ),
                example(
                    "List the files in the downloads directory.",
                    {"path": "downloads"},
                    "invoice.pdf (20480 bytes)\nsong.mp3 (3145728 bytes)",
                    "downloads holds invoice.pdf (20480 bytes) and song.mp3 (3145728 bytes).",
                ),
                example(
                    "Which files does the music/ folder hold?",
                    {"path": "music"},
                    "intro.mp3 (512000 bytes)\nlive/",
                    "music holds a folder, live/, and one file: intro.mp3 (512000 bytes).",
                ),
                example(
                    "ls docs",
                    {"path": "docs"},
                    "api.md (2048 bytes)\nimages/\nintro.md (913 bytes)",
                    "docs holds api.md (2048 bytes), a folder, images/, and intro.md (913 bytes).",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        path = "."
        for arg in args:
            if arg.name == "path" and isinstance(arg.value, Value_String):
                path = arg.value.value
        return list_dir(path)
