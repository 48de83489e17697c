"""glibc's malloc held to what the process uses (common/memory.py): a large block freed goes back
to the system even after glibc would have raised its threshold.

Measured with glibc's own accounting (mallinfo2), not the kernel's RSS counters: since Linux 6.2
those are per-CPU counters read approximately, and on a machine with many CPUs a 20 MiB change
can stay invisible in /proc/self/status. Measured in a fresh interpreter, as the daemon calls it
at start-up: after a thousand tests, the test process's own mappings (wasmtime's reservations
among them) can leave glibc unable to map a new block, and it then takes it from its arena."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

MIB = 1024 * 1024

_MEASURE = """
import ctypes, json
from llama_agent.common.memory import keep_malloc_lean, release_free_memory

MIB = 1024 * 1024
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd",
          "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print(json.dumps(None))
    raise SystemExit
libc.mallinfo2.restype = MallInfo2

def info():
    taken = libc.mallinfo2()
    return {name: getattr(taken, name) for name in ("arena", "hblkhd", "fordblks")}

keep_malloc_lean()
# Unheld, glibc would raise its threshold past 24 MiB on freeing the first block (mapped), and
# take the second from its arena, where it would stay, free but resident, once freed.
first = bytearray(24 * MIB)
del first
before = info()
second = bytearray(20 * MIB)
mapped = info()
del second
after = info()
release_free_memory()  # and nothing to trim is no error
print(json.dumps({"before": before, "mapped": mapped, "after": after}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_large_block_freed_is_given_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE], capture_output=True, text=True, timeout=60, check=True
    )
    measured = json.loads(done.stdout)
    if measured is None:
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    before, mapped, after = measured["before"], measured["mapped"], measured["after"]
    assert mapped["hblkhd"] - before["hblkhd"] >= 20 * MIB  # a mapping of its own
    assert mapped["arena"] - before["arena"] < 2 * MIB  # not taken from an arena
    assert after["hblkhd"] == before["hblkhd"]  # unmapped at once
    assert after["fordblks"] - before["fordblks"] < 2 * MIB  # nothing of it kept free in an arena
