"""Keep fd 1 for the protocol alone.

Native code loaded later (llama.cpp, wasmtime's panics) writes to fd 1 directly,
bypassing `sys.stdout`. So the protocol gets a private duplicate of fd 1, and
fd 1 itself (with `sys.stdout`) is pointed at stderr.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO


def claim_stdout_for_protocol() -> BinaryIO:
    protocol_fd = os.dup(1)  # non-inheritable: child processes cannot write to it
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)
