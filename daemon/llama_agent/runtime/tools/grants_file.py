"""The person's approvals of tools' requested grants: `grants.toml` in the config directory.

A policy file beside a tool only asks. An approval binds the tool's name, the sha256 of its
component and a digest of what its policy asks (`request_digest`), so a replaced component or a
changed request is no longer approved. The file is the person's: it is written atomically (a
temporary file, fsync, rename: runtime/storage/atomic.py) with mode 0600 in a directory created
0700. One that is a link (symbolic or hard), is not the person's own, is writable by others, lies
in a directory that is not the person's own, or does not parse, is not trusted (GrantsFileError):
it approves nothing and is not written (daemon/llama_agent/runtime/storage/private_files.py says
why each).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from llama_agent.runtime.storage.files import RefusedFile
from llama_agent.runtime.storage.private_files import (
    NotPrivate,
    open_private_file,
    private_directory,
    read_open_file,
    replace_private_file,
    shown,
)

GRANTS_FILE_NAME = "grants.toml"
MAX_GRANTS_FILE_BYTES = 1024 * 1024
CONFIG_DIR_SETTING = "LLAMA_AGENT_CONFIG_DIR"  # daemon/llama_agent/config.py
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEADER = (
    "# Tools' requested grants approved by the person: written by `llama-agent tools grant NAME`\n"
    '# and by "Always allow" in the editor. Each entry holds for that tool name, that component\n'
    "# (sha256 of the .wasm) and that request (sha256 of its policy, see docs/security.md).\n"
)


class GrantsFileError(ValueError):
    """A grants file that cannot be trusted or read; nothing in it is approved."""


class ApprovalKey(NamedTuple):
    name: str
    component_sha256: str
    policy_sha256: str


@dataclass(frozen=True)
class Approval:
    key: ApprovalKey
    # For the person reading the file; not part of what is approved.
    path: str = ""
    approved_at: str = ""


Signature = tuple[int, ...]


def request_digest(document: Mapping[str, Any], base: Path) -> str:
    """sha256 of a policy's request: canonical JSON of its parsed TOML document, in which each
    `[[dirs]]` host is resolved against `base` (the policy's directory) as the policy parser does,
    so that an approval names directories, not paths relative to wherever the policy lies."""
    canonical = dict(document)
    dirs = document.get("dirs")
    if isinstance(dirs, list):
        canonical["dirs"] = [_with_resolved_host(entry, base) for entry in dirs]
    text = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_toml_value
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _with_resolved_host(entry: Any, base: Path) -> Any:
    if not isinstance(entry, dict) or "host" not in entry:
        return entry
    return {**entry, "host": str((base / str(entry["host"])).resolve())}


def _toml_value(value: Any) -> str:
    """TOML's dates and times, which JSON lacks, as ISO 8601 text."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"not a TOML value: {type(value).__name__}")


def signature(path: Path) -> Signature | None:
    """What changes whenever reading `path` could give another answer: the file's and its
    directory's own status (not a link's target's: a link is refused whatever it leads to),
    including the inode (a file renamed over it), mode, owner and link count (the change time);
    None if there is no file."""
    try:
        file = os.lstat(path)
    except OSError:
        return None
    try:
        directory = os.lstat(path.parent)
    except OSError:
        return None
    return (*_status(directory), *_status(file), file.st_size, file.st_mtime_ns)


def _status(info: os.stat_result) -> tuple[int, ...]:
    return info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_ctime_ns


def read_approvals(path: Path) -> tuple[Approval, ...]:
    """The approvals in `path`; none if it does not exist. Raises GrantsFileError if it cannot be
    trusted (see runtime/storage/private_files.py: a link, another user's, writable by others...),
    cannot be read or does not parse."""
    try:
        with private_directory(path.parent, named_by=CONFIG_DIR_SETTING) as directory_fd:
            fd = open_private_file(directory_fd, path)
            if fd is None:
                return ()
            try:
                data = read_open_file(fd, path, MAX_GRANTS_FILE_BYTES)
            finally:
                os.close(fd)
    except FileNotFoundError:
        return ()
    except NotPrivate as error:
        raise GrantsFileError(f"not trusted: {error}") from error
    except RefusedFile as error:
        raise GrantsFileError(f"not read: {error}") from error
    except OSError as error:
        raise GrantsFileError(f"cannot read {shown(path)}: {error.strerror or error}") from error
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise GrantsFileError(f"cannot read {shown(path)}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise GrantsFileError(f"{shown(path)} is not valid TOML: {error}") from error
    return _parse(document, path)


def _parse(document: dict[str, Any], path: Path) -> tuple[Approval, ...]:
    unknown = sorted(document.keys() - {"approved"})
    if unknown:
        raise GrantsFileError(f"{path}: unknown setting {unknown[0]!r} (known: approved)")
    entries = document.get("approved", [])
    if not isinstance(entries, list):
        raise GrantsFileError(f"{path}: 'approved' must be an array of tables ([[approved]])")
    return tuple(_entry(entry, path, number) for number, entry in enumerate(entries, 1))


def _entry(entry: Any, path: Path, number: int) -> Approval:
    where = f"{path}: approval {number}"
    if not isinstance(entry, dict):
        raise GrantsFileError(f"{where} is not a table")
    name, component, policy = (entry.get(key) for key in ("name", "component_sha256", "policy_sha256"))
    if not isinstance(name, str) or not name:
        raise GrantsFileError(f"{where}: 'name' must be the tool's name")
    for key, value in (("component_sha256", component), ("policy_sha256", policy)):
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise GrantsFileError(f"{where}: {key!r} must be 64 lowercase hex digits")
    assert isinstance(component, str) and isinstance(policy, str)
    return Approval(
        ApprovalKey(name, component, policy), str(entry.get("path", "")), str(entry.get("approved_at", ""))
    )


def update_approvals(
    path: Path, change: Callable[[tuple[Approval, ...]], tuple[Approval, ...]]
) -> tuple[Approval, ...]:
    """Read, `change` and write back the approvals, holding a lock on the directory so that two
    writers (the command line and a daemon) do not lose each other's entries. Raises
    GrantsFileError, writing nothing, if the file there cannot be trusted or read."""
    with _locked_directory(path.parent):
        approvals = change(read_approvals(path))
        write_approvals(path, approvals)
    return approvals


def write_approvals(path: Path, approvals: tuple[Approval, ...]) -> None:
    """Replace `path` atomically: a crash leaves the old file or the new one, never a fragment.
    Raises GrantsFileError, writing nothing, if the directory, or a file already there, cannot
    be trusted: a link is never written through, nor replaced."""
    try:
        replace_private_file(path, render(approvals).encode("utf-8"), named_by=CONFIG_DIR_SETTING)
    except NotPrivate as error:
        raise GrantsFileError(f"not written: {error}") from error


def render(approvals: tuple[Approval, ...]) -> str:
    blocks = [_HEADER]
    for approval in approvals:
        name, component, policy = approval.key
        blocks.append(
            "\n[[approved]]\n"
            f"name = {_toml_string(name)}\n"
            f"component_sha256 = {_toml_string(component)}\n"
            f"policy_sha256 = {_toml_string(policy)}\n"
            f"path = {_toml_string(approval.path)}\n"
            f"approved_at = {_toml_string(approval.approved_at)}\n"
        )
    return "".join(blocks)


def _toml_string(text: str) -> str:
    """A TOML basic string; characters UTF-8 cannot carry (undecodable file names) become U+FFFD."""
    safe = text.encode("utf-8", "replace").decode("utf-8")
    return '"' + "".join(_escaped(char) for char in safe) + '"'


def _escaped(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:  # control characters: TOML wants them escaped
        return f"\\u{ord(char):04x}"
    return char


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    try:
        with private_directory(directory, create=True, named_by=CONFIG_DIR_SETTING) as fd:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when it is closed
            yield
    except NotPrivate as error:
        raise GrantsFileError(f"not written: {error}") from error
