"""list_dir: the entries of a directory under /workspace, one a line, sorted by name."""

import os
import posixpath

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Argument, Metadata, Param, ParamType, Value_String

WORKSPACE = "/workspace"
MAX_ENTRIES = 1000
NO_WORKSPACE = (
    'no workspace is granted to list_dir: it needs `workspace = "ro"` in list_dir.policy.toml '
    "and a client that names a workspace folder (or `--workspace DIR`)"
)


def resolve(path: str) -> str:
    """`path` (relative to /workspace, or absolute) as a normalized guest path inside /workspace."""
    if not os.path.isdir(WORKSPACE):
        raise Err(NO_WORKSPACE)
    full = posixpath.normpath(posixpath.join(WORKSPACE, path))
    if full != WORKSPACE and not full.startswith(WORKSPACE + "/"):
        raise Err(f"{path!r} is outside the workspace: paths must stay under {WORKSPACE}")
    return full


def os_error(path: str, error: OSError) -> Err:
    if isinstance(error, FileNotFoundError):
        return Err(f"{path!r} does not exist in the workspace")
    if isinstance(error, NotADirectoryError):
        return Err(f"{path!r} is a file, not a directory (read_file reads files)")
    if isinstance(error, PermissionError):
        return Err(f"{path!r} is not readable: it leads outside the workspace (through a symlink)")
    return Err(f"cannot list {path!r}: {error.strerror or error}")


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
    full = resolve(path)
    try:
        with os.scandir(full) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        raise os_error(path, error) from None
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
                )
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        path = "."
        for arg in args:
            if arg.name == "path" and isinstance(arg.value, Value_String):
                path = arg.value.value
        return list_dir(path)
