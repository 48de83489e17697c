"""The protocol keeps fd 1 to itself even when native code writes to fd 1 directly."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_native_writes_to_fd1_go_to_stderr_and_the_protocol_stream_stays_clean() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        from llama_agent.faces.stdio import claim_stdout_for_protocol
        protocol = claim_stdout_for_protocol()
        os.write(1, b"native noise\\n")   # what llama.cpp or a C library would do
        print("python print")
        protocol.write(b"FRAME")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
    assert done.stdout == b"FRAME"
    assert b"native noise" in done.stderr
    assert b"python print" in done.stderr
