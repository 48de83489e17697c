"""glibc's malloc held to what the process uses (common/memory.py): a large block freed goes back
to the system even after glibc would have raised its threshold.

Measured with glibc's own accounting (mallinfo2), not the kernel's RSS counters: since Linux 6.2
those are per-CPU counters read approximately, and on a machine with many CPUs a 20 MiB change
can stay invisible in /proc/self/status."""

from __future__ import annotations

import ctypes
import platform

import pytest
from llama_agent.common.memory import keep_malloc_lean, release_free_memory

MIB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo() -> _MallInfo2:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    libc.mallinfo2.restype = _MallInfo2
    info: _MallInfo2 = libc.mallinfo2()
    return info


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_large_block_freed_is_given_back() -> None:
    keep_malloc_lean()
    # Unheld, glibc would raise its threshold past 24 MiB on freeing the first block (mapped), and
    # take the second from its arena, where it would stay, free but resident, once freed.
    first = bytearray(24 * MIB)
    del first
    before = _mallinfo()
    second = bytearray(20 * MIB)
    mapped = _mallinfo()
    assert mapped.hblkhd - before.hblkhd >= 20 * MIB  # a mapping of its own
    assert mapped.arena - before.arena < 2 * MIB  # not taken from an arena
    del second
    after = _mallinfo()
    assert after.hblkhd == before.hblkhd  # unmapped at once
    assert after.fordblks - before.fordblks < 2 * MIB  # nothing of it kept free in an arena
    release_free_memory()  # and nothing to trim is no error
