"""Digests of content: what the daemon checks a file against before it trusts what is in it."""

from __future__ import annotations

import hashlib
import os

CHUNK_BYTES = 1 << 20


def sha256_hex(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(fd: int) -> str:
    """The sha256 of everything in the open file `fd`, read from its start."""
    digest = hashlib.sha256()
    with os.fdopen(os.dup(fd), "rb") as file:
        file.seek(0)
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
