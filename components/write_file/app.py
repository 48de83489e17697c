"""write_file: writes (or appends to) a UTF-8 text file under /workspace, atomically.

Ships without a policy, so by default it has no /workspace at all and every call fails with
a message saying how to grant one: `workspace = "rw"` in write_file.policy.toml.
"""

import contextlib
import os
import posixpath
import re
import stat
import time

from componentize_py_types import Err
from examples import example
from wit_world import exports
from wit_world.imports.types import (
    Argument,
    Metadata,
    Param,
    ParamType,
    Value_Boolean,
    Value_String,
)
from workspace import WORKSPACE, resolve

GRANT = 'add `workspace = "rw"` to write_file.policy.toml beside write_file.wasm'
NO_WORKSPACE = f"no writable workspace is granted to write_file: {GRANT}"
MAX_LINKS = 40
# The staging files this tool writes: `.NAME.` then 12 hex digits then `.partial`.
STAGING_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.partial")
# A staging file left unmodified this long belongs to no write still running (a write adds to it as
# it goes, then renames it away at once): it is what a killed write left behind.
STALE_SECONDS = 60


def leaves_workspace(full: str) -> bool:
    """Whether a symlink on the way to `full` points outside /workspace (wasmtime will not follow it)."""
    parts = posixpath.relpath(full, WORKSPACE).split("/")
    for step in (posixpath.join(WORKSPACE, *parts[:i]) for i in range(1, len(parts) + 1)):
        if posixpath.islink(step):
            try:
                os.stat(step)
            except PermissionError:
                return True
            except OSError:
                return False
    return False


def os_error(path: str, full: str, error: OSError) -> Err:
    if leaves_workspace(full):
        return Err(f"cannot write {path!r}: it leads outside the workspace (through a symlink)")
    if isinstance(error, PermissionError):
        return Err(f"cannot write {path!r}: permission denied, the workspace is read-only here; {GRANT}")
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        return Err(f"cannot write {path!r}: a part of the path is a file, not a directory")
    return Err(f"cannot write {path!r}: {error.strerror or error}")


def make_directories(directory: str) -> None:
    """`directory` and its missing parents, up to /workspace (os.makedirs would try to create /)."""
    if directory != WORKSPACE and not os.path.isdir(directory):
        make_directories(posixpath.dirname(directory))
        os.mkdir(directory)


def remove_stale_staging(directory: str) -> None:
    """Remove the staging files that writes killed midway left in `directory` (regular files of this
    tool's naming, unmodified for STALE_SECONDS): kills do not pile them up. A staging file of a
    write still running is never that old, so it is left alone. Nothing here fails the write."""
    cutoff = time.time() - STALE_SECONDS
    try:
        entries = [entry for entry in os.scandir(directory) if STAGING_NAME.fullmatch(entry.name)]
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)


def replace_atomically(full: str, data: bytes) -> None:
    """Write beside the file, then rename over it: whenever the host is stopped, even killed,
    the file holds either all of its old content or all of the new, never a fragment."""
    directory, name = posixpath.split(full)
    remove_stale_staging(directory)
    staging = posixpath.join(directory, f".{name}.{os.urandom(6).hex()}.partial")
    try:
        with open(staging, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staging, full)
    except BaseException:
        if os.path.lexists(staging):
            os.unlink(staging)
        raise


def link_target(path: str, full: str) -> str:
    """The file `full` names once its symlinks are followed, which must stay in the workspace.

    The file is replaced by a rename, which would replace a symlink rather than write through it.
    """
    outside = Err(f"cannot write {path!r}: it leads outside the workspace (through a symlink)")
    if leaves_workspace(full):
        raise outside
    for _ in range(MAX_LINKS):
        if not posixpath.islink(full):
            return full
        target = os.readlink(full)
        full = posixpath.normpath(posixpath.join(posixpath.dirname(full), target))
        # An absolute target is a host path, which means nothing inside the sandbox.
        if posixpath.isabs(target) or not full.startswith(WORKSPACE + "/"):
            raise outside
    raise Err(f"cannot write {path!r}: too many levels of symbolic links")


def write(path: str, content: str, append: bool) -> str:
    full = link_target(path, resolve(path, NO_WORKSPACE, file_only=True))
    data = content.encode("utf-8")
    if os.path.isdir(full):
        raise Err(f"cannot write {path!r}: it is a directory")
    try:
        make_directories(posixpath.dirname(full))
        before = b""
        if append and os.path.exists(full):
            with open(full, "rb") as file:
                before = file.read()
        replace_atomically(full, before + data)
    except OSError as error:
        raise os_error(path, full, error) from None
    written = f"wrote {len(data)} bytes to {posixpath.relpath(full, WORKSPACE)}"
    return written + (" (appended)" if append else "")


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="write_file",
            description=(
                "Writes a UTF-8 text file in the workspace, creating it and its directories, or "
                "replacing it; with append, adds to its end. Needs a read-write workspace grant."
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
                    name="content",
                    description="The text to write.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=None,
                ),
                Param(
                    name="append",
                    description="Add to the end of the file instead of replacing it (default: false).",
                    type=ParamType.BOOLEAN,
                    required=False,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=Value_Boolean(False),
                ),
            ],
            examples=[
                example(
                    "Save 'call Ana at 5' to a file called notes/today.txt.",
                    {"path": "notes/today.txt", "content": "call Ana at 5"},
                    "wrote 13 bytes to notes/today.txt",
                    "Saved: wrote 13 bytes to notes/today.txt.",
                ),
                example(
                    "Create a file named plan.txt with the text 'step one'.",
                    {"path": "plan.txt", "content": "step one"},
                    "wrote 8 bytes to plan.txt",
                    "Saved: wrote 8 bytes to plan.txt.",
                ),
                example(
                    "Add the line 'entry 7' to the end of log.txt.",
                    {"path": "log.txt", "content": "entry 7\n", "append": True},
                    "wrote 8 bytes to log.txt (appended)",
                    "Added it: wrote 8 bytes to log.txt (appended).",
                ),
                example(
                    "echo 'ready' > status.txt",
                    {"path": "status.txt", "content": "ready"},
                    "wrote 5 bytes to status.txt",
                    "Saved: wrote 5 bytes to status.txt.",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        strings = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_String)}
        flags = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_Boolean)}
        if "path" not in strings or "content" not in strings:
            raise Err("missing required parameter 'path' or 'content'")
        return write(strings["path"], strings["content"], flags.get("append", False))
