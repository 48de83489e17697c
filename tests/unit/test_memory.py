"""glibc's malloc held to what the process uses (common/memory.py): a large block freed goes back
to the system even after glibc would have raised its threshold."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from llama_agent.common.memory import keep_malloc_lean, release_free_memory

MIB = 1024 * 1024


def _anonymous_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_large_block_freed_is_given_back() -> None:
    keep_malloc_lean()
    # Unheld, glibc would raise its threshold past 24 MiB on freeing the first block (mapped), and
    # take the second from its arena, where it would stay resident once freed.
    first = bytearray(24 * MIB)
    del first
    before = _anonymous_mib()
    second = bytearray(20 * MIB)
    # Written, so resident: a block mapped on its own comes zeroed from the kernel, untouched.
    second[::4096] = b"\x01" * len(range(0, 20 * MIB, 4096))
    assert _anonymous_mib() - before > 15
    del second  # mapped on its own: unmapped at once
    assert _anonymous_mib() - before < 2
    release_free_memory()  # and nothing to trim is no error
