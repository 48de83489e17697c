"""The person's approvals of tools' requested grants: `grants.toml` in the config directory.

A policy file beside a tool only asks. An approval binds the tool's name, the sha256 of its
component and a digest of what its policy asks (`request_digest`), so a replaced component or a
changed request is no longer approved. The file is the person's: it is written atomically (a
temporary file, fsync, rename) with mode 0600 in a directory created 0700, and one that is not
the person's own, is writable by others or does not parse is not trusted (GrantsFileError).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from daemon.runtime.files import read_regular_file

GRANTS_FILE_NAME = "grants.toml"
MAX_GRANTS_FILE_BYTES = 1024 * 1024
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


Signature = tuple[int, int]  # (size, mtime_ns)


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
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def read_approvals(path: Path) -> tuple[Approval, ...]:
    """The approvals in `path`; none if it does not exist. Raises GrantsFileError if it cannot be
    trusted (not the person's own, writable by others) or does not parse."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ()
    except OSError as error:
        raise GrantsFileError(f"cannot read {path}: {error}") from error
    if info.st_uid != os.getuid():
        raise GrantsFileError(f"{path} belongs to another user (uid {info.st_uid}): not trusted")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise GrantsFileError(
            f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}): not trusted"
        )
    try:
        document = tomllib.loads(read_regular_file(path, MAX_GRANTS_FILE_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise GrantsFileError(f"cannot read {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise GrantsFileError(f"{path} is not valid TOML: {error}") from error
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
    """Replace `path` atomically: a crash leaves the old file or the new one, never a fragment."""
    _ensure_private_directory(path.parent)
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render(approvals))
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
    _fsync_directory(path.parent)


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


def _ensure_private_directory(directory: Path) -> None:
    """Create the config directory for the person alone (0700); an existing one is left as it is."""
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    _ensure_private_directory(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
