"""What the workspace tools (list_dir, read_file, search_text, write_file) share: where the
workspace is, how a path argument becomes a path inside it, and how an OSError reads.

Each tool's `component.toml` puts this directory on its module path (`paths = ["../shared"]`).
"""

import os
import posixpath
from collections.abc import Mapping

from componentize_py_types import Err

WORKSPACE = "/workspace"


def no_workspace(tool: str) -> str:
    """The error of a read-only tool that was granted no workspace."""
    return (
        f'no workspace is granted to {tool}: it needs `workspace = "ro"` in {tool}.policy.toml '
        "and a client that names a workspace folder (or `--workspace DIR`)"
    )


def resolve(path: str, missing: str, *, file_only: bool = False) -> str:
    """`path` (relative to /workspace, or absolute) as a normalized guest path inside /workspace.

    `missing` is the error when no workspace is granted; with `file_only`, /workspace itself is
    refused too (it cannot be written as a file).
    """
    if not os.path.isdir(WORKSPACE):
        raise Err(missing)
    full = posixpath.normpath(posixpath.join(WORKSPACE, path))
    if full.startswith(WORKSPACE + "/") or (full == WORKSPACE and not file_only):
        return full
    rule = "must name a file under" if file_only else "must stay under"
    raise Err(f"{path!r} is outside the workspace: paths {rule} {WORKSPACE}")


def os_error(path: str, error: OSError, verb: str, hints: Mapping[type[OSError], str] | None = None) -> Err:
    """The error for `error` on `path`: a tool's own `hints` (the text after the quoted path) by
    error type first, then what every read-only tool says, then `cannot <verb> 'path': reason`."""
    for kind, hint in (hints or {}).items():
        if isinstance(error, kind):
            return Err(f"{path!r} {hint}")
    if isinstance(error, FileNotFoundError):
        return Err(f"{path!r} does not exist in the workspace")
    if isinstance(error, PermissionError):
        return Err(f"{path!r} is not readable: it leads outside the workspace (through a symlink)")
    return Err(f"cannot {verb} {path!r}: {error.strerror or error}")
