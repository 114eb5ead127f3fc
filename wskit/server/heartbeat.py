"""Application-level heartbeat: find dead peers fast, never drop live ones.

The seed sends ``{"type": "ping"}`` every 30 s and never checks for an answer, so
a peer whose network vanished stays "connected", and in its rooms, until TCP
gives up minutes later. Here every ping starts a deadline: a connection that has
not answered ``{"type": "pong"}`` within ``timeout`` is closed with
:attr:`CloseCode.HEARTBEAT_TIMEOUT` (4002) and leaves its rooms at once.

Timing: one ping is outstanding at a time. After a pong the next ping goes out
``interval`` after the previous one, so a peer that falls silent is closed at
most ``interval + timeout`` later.

Two timer handles per connection (``loop.call_later``), no task: nothing can
outlive the connection, and ``stop()`` is all cleanup needs.

While the server itself has stopped reading a connection (back-pressure on a
sender whose receivers are loaded), a pong may be sitting unread in the socket:
the heartbeat is *held* then, and a deadline that falls due is re-armed instead
of closing a peer that is plainly alive (it is sending).

App-level versus protocol-level pings: RFC 6455 section 5.5.2 ping frames are
answered by the peer's WebSocket library (browsers do so automatically, and the
page's JavaScript never sees them); they prove the TCP path and the peer's
network stack are alive. An app-level ping is answered by the client's own code,
so it also proves the page or program is running its event loop. aiohttp's
``heartbeat=`` and uvicorn's ``ws_ping_interval``/``ws_ping_timeout`` give the
former; this module gives the latter. wskit exposes both (``Settings``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..core.protocol import PING, CloseCode

__all__ = ["Heartbeat"]


class Heartbeat:
    """Ping one connection every ``interval`` s; close it if a pong is ``timeout`` s late."""

    __slots__ = ("_send", "_close", "interval", "timeout", "_loop", "_ping_handle",
                 "_deadline", "_sent_at", "last_rtt", "held")

    def __init__(
        self,
        send: Callable[[str], object],
        close: Callable[[int, str], None],
        interval: float,
        timeout: float,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")
        self._send = send
        self._close = close
        self.interval = interval
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._ping_handle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._sent_at = 0.0
        self.last_rtt: float | None = None
        #: True while the server is not reading this peer (see the module docstring)
        self.held = False

    @property
    def active(self) -> bool:
        """A ping or a deadline is scheduled."""
        return self._ping_handle is not None or self._deadline is not None

    def start(self) -> None:
        self._ping_handle = self._loop.call_later(self.interval, self._ping)

    def _ping(self) -> None:
        self._ping_handle = None
        self._sent_at = self._loop.time()
        self._send(PING)
        self._deadline = self._loop.call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        if self.held:
            self._deadline = self._loop.call_later(self.timeout, self._expire)
            return
        self._deadline = None
        self._close(CloseCode.HEARTBEAT_TIMEOUT, f"no pong within {self.timeout:g}s")

    def pong(self) -> None:
        """The peer answered: cancel the deadline and schedule the next ping."""
        if self._deadline is None:
            return  # unsolicited or late pong: harmless, ignored
        self._deadline.cancel()
        self._deadline = None
        now = self._loop.time()
        self.last_rtt = now - self._sent_at
        delay = max(0.0, self._sent_at + self.interval - now)
        self._ping_handle = self._loop.call_later(delay, self._ping)

    def stop(self) -> None:
        for handle in (self._ping_handle, self._deadline):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._deadline = None
