"""Signing what the daemon keeps on disk and later trusts: compiled tools, evaluated prompts.

What is signed is an HMAC-SHA256 under a key kept in the cache directory (`signing.key`), so that
every daemon using the cache verifies what any of them wrote there, and nothing else verifies. A
signature is worth what the key is: the directory and the key must be the person's own
(private_files.py), or whoever else could write them could sign their own content.

A cache that others only read (a service's replicas, `--cache-read-only`) is sealed instead: an
Ed25519 signature under a private key that signs it once, where it is built, and is then discarded;
the cache keeps only the public key (`signing.pub`), which verifies and cannot sign. Whoever takes
over a replica can then forge nothing for the others.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from llama_agent.runtime.storage.atomic import write_atomically
from llama_agent.runtime.storage.private_files import (
    open_private_file,
    private_directory,
    read_open_file,
    shown,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_NAME = "signing.key"
# A key file of another size up to this is replaced (a torn write); a bigger one is refused.
MAX_KEY_FILE_BYTES = 4096
# The setting that names the directory holding the key, for messages.
KEY_DIRECTORY_SETTING = "--cache-dir (or LLAMA_AGENT_CACHE_DIR)"
PUBLIC_KEY_NAME = "signing.pub"
PUBLIC_KEY_BYTES = 32  # an Ed25519 public key, raw


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


# Ed25519 (`cryptography`) is imported only where a cache is sealed or verified with it: the import
# takes about 30 ms, which every other start of the daemon does without.


def new_key_pair() -> Ed25519PrivateKey:
    """A private key to seal with, kept in memory: its public half is `public_key_of(it)`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def public_key_of(private_key: Ed25519PrivateKey) -> bytes:
    """The raw public key (PUBLIC_KEY_BYTES) that verifies what `private_key` seals."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal(private_key: Ed25519PrivateKey, message: bytes) -> bytes:
    """The Ed25519 signature of `message`."""
    return private_key.sign(message)


def sealed(public_key: bytes, message: bytes, signature: str) -> bool:
    """Whether `signature` (its hex, as a text file holds it) is `message`'s under the private key
    whose public half is `public_key` (raw)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):  # ValueError: not hex, or not a key
        return False
    return True


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
