"""Keep tokens out of framework logs.

The token travels in the query string (browsers cannot set headers on a
WebSocket handshake), so any access log that prints the request line prints a
bearer credential: ``uvicorn.run(create_app(...))`` logs
``"WebSocket /ws?token=eyJ..." [accepted]`` on ``uvicorn.error`` at INFO, and
``web.run_app`` logs ``GET /ws?token=...`` on ``aiohttp.access``.
:func:`install_token_filter` (called by both adapters' ``create_app``) adds a
:class:`logging.Filter` to those loggers that rewrites ``token=<value>`` as
``token=[redacted]`` in the message, its arguments and any string ``extra``.
Public logging API only; the record keeps its shape (uvicorn's access formatter
unpacks ``record.args`` positionally).
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["TOKEN_LOGGERS", "TokenFilter", "install_token_filter", "redact"]

#: the framework loggers whose lines may carry a request's URL
TOKEN_LOGGERS = ("uvicorn.error", "uvicorn.access", "aiohttp.access", "aiohttp.server",
                 "aiohttp.web")

# token=VALUE up to the next separator, in any case and with any letter of the name
# (or the "=") percent-encoded: the frameworks decode a query's names before reading
# them, so "?%74oken=" and "?TOKEN=" are a token to the server (or may be logged as one)
_NAME = "".join(f"(?:{c}|%{ord(c):02x})" for c in "token")
_TOKEN = re.compile(rf"({_NAME}(?:=|%3d))[^&\s\"'#;,]+", re.IGNORECASE)


def _may_hold(text: str) -> bool:
    return "%" in text or "oken" in text.lower()


def redact(text: str) -> str:
    """``text`` with every ``token=<value>`` replaced by ``token=[redacted]``."""
    return _TOKEN.sub(r"\1[redacted]", text) if _may_hold(text) else text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace")).encode()
    return value


class TokenFilter(logging.Filter):
    """Rewrites ``token=`` values in a record; never drops the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _clean(v) for k, v in args.items()}
        for key, value in list(vars(record).items()):
            if key not in ("msg", "args") and isinstance(value, str) and _may_hold(value):
                setattr(record, key, redact(value))
        return True


_filter = TokenFilter()


def install_token_filter() -> None:
    """Add the filter to each framework logger once (idempotent)."""
    for name in TOKEN_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
