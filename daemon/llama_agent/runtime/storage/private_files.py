"""Files only the person may have written: the grants file, the compile cache and its key.

The daemon approves what grants.toml says and runs what its compile cache's key signed, so no
other user may be able to write them, and no tool either: tools run as the person, and all that
keeps them out is that no tool is granted the config directory or the cache for writing
(policy.py). That protects a directory, where it really is. So a file here is trusted only if:

- it is the file itself: not a symbolic link (its target may lie in a workspace a tool can
  write: a dotfiles habit), nor one name of a hard-linked file (another name may lie there);
- it is a regular file (not a FIFO, which would block, nor a device), the person's, writable
  by nobody else;
- its directory is not a link either, is the person's and is writable by nobody else;
- every directory on the way to it belongs to the person or root and only they can write it
  (or it is sticky, like /tmp, and the entry in it is theirs).

Anything else is refused (NotPrivate), saying what is wrong and how to fix it. A file is checked
on the descriptor that is then read, opened without following a link or waiting for a FIFO's
writer, so the file checked is the file read.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import grp
import logging
import os
import pwd
import shlex
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from llama_agent.common.text import visible
from llama_agent.runtime.storage.atomic import write_atomically
from llama_agent.runtime.storage.files import RefusedFile

log = logging.getLogger(__name__)

# Opening a FIFO for reading would otherwise wait for a writer, and a link is never followed.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel allows when it resolves a path


class NotPrivate(OSError):
    """A file or directory that someone other than the person may have written or may swap; the
    message says what is wrong and how to fix it."""


def shown(path: Path | str) -> str:
    """A path for a message, control characters made visible."""
    return visible(str(path))


def command(*words: Path | str) -> str:
    """A shell command to paste, each word quoted."""
    return visible(" ".join(shlex.quote(str(word)) for word in words))


@contextlib.contextmanager
def private_directory(path: Path, *, create: bool = False, named_by: str = "") -> Iterator[int]:
    """A descriptor of the directory `path` once it is checked to be the person's own: not a
    link, owned by them, writable by nobody else, reached through directories nobody else can
    change. With `create`, a missing directory (and each missing one above it) is made 0700.
    `named_by`: the setting that names it, for the message if it is a link. Raises NotPrivate,
    FileNotFoundError (missing, without `create`) or another OSError."""
    if create:
        _make_private_directories(path)
    check_the_way(path)
    try:
        fd = os.open(path, _DIRECTORY_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise NotPrivate(_link_words(path, "directory", named_by)) from error
        raise
    try:
        info = os.fstat(fd)
        _check_owned(path, info, "directory")
        yield fd
    finally:
        os.close(fd)


def private_or_temporary(path: Path, what: str) -> Path:
    """`path` if it is the person's own directory (made 0700 if missing). Otherwise nothing in it
    is used or written: the log says what is wrong, and `what` (say "models") goes into a new
    private directory for this process (mkdtemp: 0700, a name nobody could take first), removed
    at exit."""
    try:
        with private_directory(path, create=True):
            return path
    except NotPrivate as error:
        log.error(
            "not using %s for %s, nothing in it is trusted: %s. Until that is fixed, or another "
            "--cache-dir is given, they are kept for this process only",
            shown(path),
            what,
            error,
        )
    except OSError as error:
        log.warning(
            "cannot use %s for %s (%s): they are kept for this process only", shown(path), what, error
        )
    directory = Path(tempfile.mkdtemp(prefix="llama-agent-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def open_private_file(directory_fd: int, path: Path) -> int | None:
    """A descriptor of the file `path` (whose directory is open as `directory_fd`) once it is
    checked to be a regular file of the person's, writable by nobody else, with no other name;
    None if there is none. Raises NotPrivate, or OSError."""
    try:
        fd = os.open(path.name, _FILE_FLAGS, dir_fd=directory_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotPrivate(_link_words(path, "file")) from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotPrivate(
                f"{shown(path)} is not a regular file but {_file_type(info.st_mode)}: remove it, "
                "a new one is made when it is next needed"
            )
        _check_owned(path, info, "file")
        if info.st_nlink > 1:
            raise NotPrivate(
                f"{shown(path)} has {info.st_nlink} hard links: the same file can be reached, and "
                f"written, under another name, wherever that lies. Give it a name of its own: "
                f"{command('cp', path, f'{path}.new')} && {command('mv', f'{path}.new', path)}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def replace_private_file(path: Path, data: bytes, *, named_by: str = "") -> None:
    """Replace `path` with a file holding `data`, atomically (atomic.py), mode 0600, once its
    directory (made 0700 if missing) and any file already there are checked to be the person's
    own: a link is never written through, nor replaced. `named_by`: the setting that names the
    directory, for the message if it is a link. Raises NotPrivate, or another OSError."""
    with private_directory(path.parent, create=True, named_by=named_by) as directory_fd:
        existing = open_private_file(directory_fd, path)
        if existing is not None:
            os.close(existing)
        # Created and renamed within the directory checked, wherever its path leads meanwhile.
        write_atomically(path, data, directory_fd=directory_fd)


def read_open_file(fd: int, path: Path, max_bytes: int) -> bytes:
    """All of the open file `fd` (named `path` in messages), which may hold at most `max_bytes`."""
    size = os.fstat(fd).st_size
    if size > max_bytes:
        raise RefusedFile(f"{shown(path)} is {size:,} bytes; the limit is {max_bytes:,}")
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = os.pread(fd, min(1 << 20, max_bytes + 1 - total), total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:  # it grew after the check
        raise RefusedFile(f"{shown(path)} grew past the limit of {max_bytes:,} bytes while being read")
    return b"".join(chunks)


def check_the_way(path: Path) -> None:
    """Refuse `path` if someone other than the person (or root) could change where it leads:
    every directory whose entries are looked up on the way, as the kernel walks it (through each
    link, to its target), must belong to the person or root and be writable by nobody else, or
    be sticky (/tmp) and hold the next entry as the person's or root's. The last component is
    not looked at: the caller opens it without following a link. A component that does not
    exist ends the walk."""
    pending = deque(Path(os.path.join(os.getcwd(), path)).parts[1:])
    current = Path("/")
    current_info = os.stat(current)
    _check_directory_on_the_way(current, current_info, path)
    links = 0
    while len(pending) > 1:
        name = pending.popleft()
        if name == "..":
            current = current.parent
            current_info = os.stat(current)
            continue
        entry = current / name
        try:
            info = os.lstat(entry)
        except FileNotFoundError:
            return
        if writable_by_others(current_info):  # and sticky, or it was refused
            _check_entry_in_a_shared_directory(current, entry, info, path)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise NotPrivate(f"{shown(path)}: too many symbolic links on the way")
            target = Path(os.readlink(entry))
            if target.is_absolute():
                current, current_info = Path("/"), os.stat("/")
            pending.extendleft(reversed(target.parts[1:] if target.is_absolute() else target.parts))
            continue
        if not stat.S_ISDIR(info.st_mode):
            return  # opening it fails with the reason
        _check_directory_on_the_way(entry, info, path)
        current, current_info = entry, info


def writable_by_others(info: os.stat_result) -> bool:
    """Whether a user other than the owner may write: others may, or a group other than the
    owner's private one (a group of that name holding no one else, as "user private groups" set
    up with umask 002 have)."""
    mode = info.st_mode
    return bool(mode & stat.S_IWOTH) or bool(
        mode & stat.S_IWGRP and not _private_group(info.st_gid, info.st_uid)
    )


@functools.cache
def _private_group(gid: int, uid: int) -> bool:
    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    only_the_user = set(group.gr_mem) <= {user.pw_name}
    return group.gr_gid == user.pw_gid and group.gr_name == user.pw_name and only_the_user


def _check_owned(path: Path, info: os.stat_result, kind: str) -> None:
    me = os.geteuid()
    if info.st_uid != me:
        raise NotPrivate(
            f"the {kind} {shown(path)} belongs to another user (uid {info.st_uid}), not to you (uid "
            f"{me}): whoever owns it decides what is in it. If it should be yours: "
            f"{command('chown', str(me), path)}; otherwise remove it"
        )
    if writable_by_others(info):
        raise NotPrivate(
            f"the {kind} {shown(path)} is writable by others (mode {stat.S_IMODE(info.st_mode):o}): "
            f"{command('chmod', 'go-w', path)}"
        )


def _check_directory_on_the_way(directory: Path, info: os.stat_result, path: Path) -> None:
    if info.st_uid not in (0, os.geteuid()):
        raise NotPrivate(
            f"{shown(directory)}, on the way to {shown(path)}, belongs to another user (uid "
            f"{info.st_uid}), who can replace what lies below it: use a directory that only you "
            "(or root) own"
        )
    if writable_by_others(info) and not info.st_mode & stat.S_ISVTX:
        raise NotPrivate(
            f"{shown(directory)}, on the way to {shown(path)}, is writable by others (mode "
            f"{stat.S_IMODE(info.st_mode):o}), who can replace what lies below it: "
            f"{command('chmod', 'go-w', directory)}, or use another directory"
        )


def _check_entry_in_a_shared_directory(
    directory: Path, entry: Path, info: os.stat_result, path: Path
) -> None:
    """In a sticky directory others may write (/tmp), only an entry's owner can rename or replace
    it: it must be the person's or root's."""
    if info.st_uid not in (0, os.geteuid()):
        raise NotPrivate(
            f"{shown(entry)}, on the way to {shown(path)}, belongs to another user (uid "
            f"{info.st_uid}) in the shared directory {shown(directory)}: they can replace it"
        )


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "something else"


def _link_words(path: Path, kind: str, named_by: str = "") -> str:
    try:
        target = os.path.join(path.parent, os.readlink(path))
    except OSError:
        target = "?"
    if kind == "file":
        fix = f"Replace the link with the file itself: {command('cp', '--remove-destination', target, path)}"
    elif named_by:
        fix = f"Set {named_by} to the directory itself: {shown(os.path.realpath(path))}"
    else:
        fix = f"Remove the link ({command('rm', path)}): a directory is made in its place"
    return (
        f"{shown(path)} is a symbolic link (to {shown(target)}): only the {kind} itself is protected "
        f"from the tools, not where a link leads. {fix}"
    )


def _make_private_directories(path: Path) -> None:
    """Make `path` and each missing directory above it, 0700 whatever the umask."""
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if os.path.lexists(directory):
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made meanwhile: checked like any other
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
