"""Structured logs: ``python -m wskit --log-format json ...`` writes one JSON object a line.

Log collectors (Loki, Elasticsearch, CloudWatch) index fields rather than parse
sentences; each record becomes ``{"ts", "level", "logger", "message"}`` plus
``"exc"`` with the traceback, and any ``extra={...}`` fields given to the log call.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

__all__ = ["JsonFormatter"]

#: attributes every LogRecord has: anything else came from ``extra=``
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (UTC timestamps, RFC 3339)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) \
                    else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
