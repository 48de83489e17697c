"""Logging goes to stderr or a file, never to stdout (it belongs to the protocol), and never
holds up serving.

A client that starts the daemon may capture its stderr and never read it (pygls' own
`LanguageClient` does): once the pipe is full, every write to it blocks. So records go through
a bounded queue to one writer thread; when the queue is full, records are dropped and counted,
and the count is logged once the writer catches up.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import threading
import time
from pathlib import Path

from pygls.exceptions import JsonRpcException

from llama_agent.common.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    SERVER_NOT_INITIALIZED,
)
from llama_agent.runtime.telemetry.audit import configure_audit_log
from llama_agent.runtime.telemetry.logs import ContextIds, JsonFormatter
from llama_agent.runtime.telemetry.tracing import configure_tracing

# Records waiting for the writer; beyond this they are dropped (and counted).
QUEUE_SIZE = 10_000
# At exit, how long the writer may take to write what is queued.
FLUSH_SECONDS = 1.0
# Errors that are the client's, answered to it: one line at default verbosity, no traceback.
CLIENT_ERRORS = (
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    REQUEST_CANCELLED,
    SERVER_NOT_INITIALIZED,
)

_listener: logging.handlers.QueueListener | None = None
_records: queue.Queue[logging.LogRecord] | None = None


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Puts records on a bounded queue without ever waiting; counts what did not fit."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0
        self._lock = threading.Lock()

    def enqueue(self, record: logging.LogRecord) -> None:
        with self._lock:
            if self.dropped and self._put(self._dropped_record()):
                self.dropped = 0
            if not self._put(record):
                self.dropped += 1

    def _put(self, record: logging.LogRecord) -> bool:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            return False
        return True

    def _dropped_record(self) -> logging.LogRecord:
        return logging.LogRecord(
            __name__, logging.WARNING, __file__, 0,
            "%d log records dropped: the log's reader did not keep up", (self.dropped,), None,
        )  # fmt: skip


class ClientErrorsBriefly(logging.Filter):
    """A request refused as the client's error (bad params, unknown method) is logged as one
    warning line, not as an error with pygls' traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, JsonRpcException) and error.code in CLIENT_ERRORS:
            record.msg, record.args = f"{record.getMessage()}: {error}", ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(verbosity: int, log_file: Path | None = None, log_format: str = "text") -> None:
    """-1: warnings only (command-line tools), 0: info, 1: debug, 2: debug with protocol bodies.
    `log_format` "json": one JSON object per record, with the tenant, session and request ids."""
    global _listener, _records
    level = logging.DEBUG if verbosity >= 1 else logging.INFO if verbosity == 0 else logging.WARNING
    sink: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        sink = logging.FileHandler(log_file, encoding="utf-8")
    else:
        sink = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    sink.setFormatter(JsonFormatter() if log_format == "json" else text)
    if _listener is not None:
        _listener.stop()
    _records = queue.Queue(QUEUE_SIZE)
    _listener = logging.handlers.QueueListener(_records, sink)
    _listener.start()
    handler = DroppingQueueHandler(_records)
    if verbosity < 1:
        handler.addFilter(ClientErrorsBriefly())
    if log_format == "json":  # the ids are the context's where a record is made, not the writer's
        handler.addFilter(ContextIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pygls logs every message body, and the MCP SDK every request, at INFO; keep that for -vv.
    for chatty in ("pygls", "mcp"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


def configure_service_telemetry(audit_log: Path | None) -> None:
    """For a long-running face: traces exported if OTEL_EXPORTER_OTLP_ENDPOINT is set, and the
    audit log opened (OSError if it cannot be)."""
    if configure_tracing("llama-agent"):
        logging.getLogger(__name__).info("exporting traces over OTLP")
    configure_audit_log(audit_log)


@atexit.register
def _flush() -> None:
    """Give the writer a moment to write what is queued; never wait on a blocked sink for long
    (its thread is a daemon thread, so exit does not join it)."""
    if _records is None:
        return
    deadline = time.monotonic() + FLUSH_SECONDS
    while not _records.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
