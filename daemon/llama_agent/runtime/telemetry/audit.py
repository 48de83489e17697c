"""The audit log: one JSON object per line for each decision about what tools may do, and for each
call that could write.

Records: "consent" (the person's answer to a call that may write: tool, choice), "grant" (the
answer to a tool's request for grants: tool, choice, the tool's file), "call" (a call made with a
writable directory: tool, the writable paths, outcome, and the bytes written when the host
measures them). Each has the time, the event, the tenant, and the session and request ids when set
(telemetry/context.py).

The file is opened for appending only (O_APPEND): every line is one `write`, so lines from several
threads, or several processes sharing the file, never interleave, and nothing stays buffered in the
process. A line is at most MAX_LINE_BYTES: longer values are cut, and the record says so.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from llama_agent.runtime.telemetry.context import current_ids, current_tenant

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024
# When a record is too long: each text is cut to this many characters, each list to this many items.
_CUT_TEXT = 512
_CUT_ITEMS = 16
_KEPT_WHOLE = ("time", "event", "tenant", "session_id", "request_id", "tool")


class AuditLog:
    """An append-only file of audit records; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(path, flags, 0o600)
        self._lock = threading.Lock()

    def write(self, event: str, fields: Mapping[str, object]) -> None:
        record: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            **current_ids(),
            "tenant": current_tenant(),
            **fields,
        }
        line = _line(record)
        with self._lock:
            if self._fd < 0:
                return
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk: what was written is one broken line, ended
                os.write(self._fd, b"\n")
                raise OSError(f"the audit log {self.path} is full: a record was cut short")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _line(record: dict[str, object]) -> bytes:
    """`record` as one line of JSON, at most MAX_LINE_BYTES."""
    line = _encoded(record)
    if len(line) <= MAX_LINE_BYTES:
        return line
    cut = {name: _cut(value) for name, value in record.items()} | {"truncated": True}
    line = _encoded(cut)
    if len(line) <= MAX_LINE_BYTES:
        return line
    kept = {name: _cut(record[name]) for name in _KEPT_WHOLE if name in record}
    return _encoded(kept | {"truncated": True})


def _cut(value: object) -> object:
    if isinstance(value, str):
        return value[:_CUT_TEXT]
    if isinstance(value, list | tuple):
        return [_cut(item) for item in value[:_CUT_ITEMS]]
    return value


def _encoded(record: Mapping[str, object]) -> bytes:
    # ASCII only: a name with control or odd characters cannot forge a line or a field.
    return json.dumps(record, separators=(",", ":"), default=str).encode("ascii") + b"\n"


_log: AuditLog | None = None


def configure_audit_log(path: Path | None) -> None:
    """Write audit records to `path` from now on (None: keep none). Raises OSError if it cannot
    be opened."""
    global _log
    previous, _log = _log, AuditLog(path) if path is not None else None
    if previous is not None:
        previous.close()


def auditing() -> bool:
    return _log is not None


def record(event: str, **fields: object) -> None:
    """An audit record of `event` with `fields`, if there is an audit log. A record that cannot be
    written is logged as an error; the work it records goes on."""
    if _log is None:
        return
    try:
        _log.write(event, fields)
    except OSError as error:
        log.error("cannot write the audit log %s: %s", _log.path, error)
