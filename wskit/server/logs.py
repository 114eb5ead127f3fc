"""Log lines a client can cause, rate-limited so no client can flood the log.

A client that sends binary frames, invalid UTF-8 or nothing at all earns a
close, and the operator may want to know, once, but not once per frame: a
loop of bad connections would otherwise write the log as fast as it can send.
:data:`client_faults` lets ``burst`` lines through per ``window`` seconds and
then counts; the next line let through says how many were suppressed.

uvicorn's websockets-sansio protocol logs a full traceback
(``logger.exception``) for every text frame that is not valid UTF-8, after
correctly closing with 1007. :func:`quiet_uvicorn_client_faults` installs a
:class:`logging.Filter` on ``uvicorn.error`` that turns exactly those records
into one rate-limited line here. Public logging API only: uvicorn's code is
untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog", "client_faults", "quiet_uvicorn_client_faults"]


class RateLimitedLog:
    """At most ``burst`` lines per ``window`` seconds; the rest are counted."""

    def __init__(self, logger: logging.Logger, burst: int = 10, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # servers may run on several threads' loops
        self._window_start = -float("inf")
        self._sent = 0
        self.suppressed = 0

    def reset(self) -> None:
        """Start a fresh window (tests; a new lesson)."""
        with self._lock:
            self._window_start, self._sent, self.suppressed = -float("inf"), 0, 0

    def log(self, level: int, msg: str, *args: Any) -> bool:
        """Log one line unless over the limit; True if it was written."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= self.window:
                self._window_start, self._sent = now, 0
            if self._sent >= self.burst:
                self.suppressed += 1
                return False
            self._sent += 1
            suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            msg += " (%d similar line(s) suppressed)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args)
        return True


#: closes and faults caused by clients, all servers of this process
client_faults = RateLimitedLog(logging.getLogger("wskit.clients"))

_UVICORN_UTF8 = "Invalid UTF-8 sequence received from client"


class _UvicornClientFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith(_UVICORN_UTF8):
            client_faults.log(logging.INFO, "closed a connection with 1007: a text frame "
                              "was not valid UTF-8")
            return False
        return True


_filter = _UvicornClientFaults()


def quiet_uvicorn_client_faults() -> None:
    """Idempotent: install the filter described in the module docstring."""
    logger = logging.getLogger("uvicorn.error")
    if _filter not in logger.filters:
        logger.addFilter(_filter)
