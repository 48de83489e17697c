"""Signing what the daemon keeps on disk and later trusts: compiled tools, evaluated prompts.

What is signed is an HMAC-SHA256 under a key kept in the cache directory (`signing.key`), so that
every daemon using the cache verifies what any of them wrote there, and nothing else verifies. A
signature is worth what the key is: the directory and the key must be the person's own
(private_files.py), or whoever else could write them could sign their own content.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
from pathlib import Path

from llama_agent.runtime.storage.atomic import write_atomically
from llama_agent.runtime.storage.private_files import (
    open_private_file,
    private_directory,
    read_open_file,
    shown,
)

log = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_NAME = "signing.key"
# A key file of another size up to this is replaced (a torn write); a bigger one is refused.
MAX_KEY_FILE_BYTES = 4096
# The setting that names the directory holding the key, for messages.
KEY_DIRECTORY_SETTING = "--cache-dir (or LLAMA_AGENT_CACHE_DIR)"


def sign(key: bytes, message: bytes) -> bytes:
    """The signature of `message` under `key`."""
    return hmac.new(key, message, hashlib.sha256).digest()


def signed(key: bytes, message: bytes, signature: bytes | str) -> bool:
    """Whether `signature` (its bytes, or their hex as a text file holds them) is `message`'s
    under `key`; compared in constant time."""
    expected = sign(key, message)
    if isinstance(signature, str):
        return signature.isascii() and hmac.compare_digest(signature, expected.hex())
    return hmac.compare_digest(signature, expected)


def signing_key(directory: Path) -> bytes:
    """The key in `directory/signing.key`, made on first use (mode 0600). A directory that cannot
    be trusted or written gets a key of this process's own, kept nowhere: what it signs verifies
    within this process only."""
    try:
        return stored_key(directory)
    except OSError as error:
        log.warning(
            "cannot keep a signing key in %s (%s): what is cached there now holds for this process only",
            shown(directory),
            error,
        )
    return new_key()


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def stored_key(directory: Path) -> bytes:
    """The directory's key, made if missing, once the directory and the key are checked to be the
    person's own (private_files.py). Raises NotPrivate or OSError."""
    path = directory / KEY_NAME
    with private_directory(directory, create=True, named_by=KEY_DIRECTORY_SETTING) as directory_fd:
        # Under a lock, so that a daemon starting meanwhile neither reads a key half made nor
        # makes another.
        fcntl.flock(directory_fd, fcntl.LOCK_EX)
        key = _read_key(directory_fd, path)
        if key is not None and len(key) == KEY_BYTES:
            return key
        if key is not None:  # torn by a crash, say: what was signed under it is made again
            log.warning("%s holds %d bytes, not %d: making a new key", shown(path), len(key), KEY_BYTES)
        write_atomically(path, new_key(), directory_fd=directory_fd)
        key = _read_key(directory_fd, path)
    if key is None or len(key) != KEY_BYTES:
        raise OSError(f"{shown(path)} did not keep the key written to it")
    return key


def _read_key(directory_fd: int, path: Path) -> bytes | None:
    fd = open_private_file(directory_fd, path)
    if fd is None:
        return None
    try:
        return read_open_file(fd, path, MAX_KEY_FILE_BYTES)
    finally:
        os.close(fd)
