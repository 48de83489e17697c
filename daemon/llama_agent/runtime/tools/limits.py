"""What one tool call may consume: the defaults every tool gets, and what a policy may raise."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one invocation may consume. Defaults apply to every tool."""

    timeout_seconds: float = 10.0
    memory_bytes: int = 256 * MIB  # per linear memory
    output_bytes: int = 1 * MIB
    # Linear memories a call may create: the call's memory is at most memories * memory_bytes.
    memories: int = 1
    # Bytes one call may write to files through `rw` grants (no file grows past it either).
    write_bytes: int = 64 * MIB
