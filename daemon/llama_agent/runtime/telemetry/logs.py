"""Log records as JSON lines (`--log-format json`): time, level, logger, message, and the tenant,
session and request ids of the work that logged them, when set (telemetry/context.py).

The ids are read where the record is made (`ContextIds`, a filter on the handler), not where it is
written: the daemon writes its log from a thread of its own, which knows no request.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from llama_agent.runtime.telemetry.context import current_ids

_IDS = "llama_agent_ids"


class ContextIds(logging.Filter):
    """Stamps each record with the context's ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, _IDS, current_ids())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, _IDS, None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
