"""glibc's malloc held to what the process uses (bench/RESULTS.md, memory).

glibc gives a block of 128 KiB or more its own mapping, returned to the system when freed, but
raises that threshold (up to 32 MiB) each time such a block is freed; after that, blocks of
several MiB (tables while the model loads, prompt states, components read at start-up) come from
its arenas and stay resident once freed, fragmented among small live ones: about 60 MiB of the
daemon's RSS with the model loaded. Fixed at 4 MiB, the threshold leaves the blocks that come
and go at every token (a row of logits: 1 MiB) in the arenas, where they cost no page faults.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
from typing import Any

# mallopt's parameters: the size from which a block gets its own mapping, and the free space an
# arena keeps at its top (which glibc raises along with the first). Measured: 128 KiB holds the
# RSS as low but costs 150 page faults a decoded token; 4 MiB none.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 4 * 1024 * 1024


def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def keep_malloc_lean() -> None:
    """Fix both thresholds: call it early, before large blocks come and go."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD)


def release_free_memory() -> None:
    """Give back to the system the free pages malloc holds now (after a load, say)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
