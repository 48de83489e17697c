"""Logging goes to stderr or a file: stdout belongs to the protocol."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def configure_logging(verbosity: int, log_file: Path | None = None) -> None:
    """-1: warnings only (command-line tools), 0: info, 1: debug, 2: debug with protocol bodies."""
    level = logging.DEBUG if verbosity >= 1 else logging.INFO if verbosity == 0 else logging.WARNING
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pygls logs every message body at INFO; keep that for -vv.
    logging.getLogger("pygls").setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
