"""Ways for a client to misbehave on purpose, for lessons and tests.

A frozen browser tab (:meth:`~LessonHooks.pause_reading`), a network that goes
away (:meth:`~LessonHooks.drop`), a crashed peer (:meth:`~LessonHooks.kill`),
invalid UTF-8 in a text frame (:meth:`~LessonHooks.send_text_bytes`). None of
these is needed to *use* a server; they are grouped here, apart from the API in
:mod:`wskit.client.aio`, so that reading the client does not mean reading them.
(The zombie that receives pings and never answers is ``answer_pings = False``.)
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import aiohttp

__all__ = ["LessonHooks"]


class LessonHooks:
    """Mixed into :class:`wskit.Client`: the hooks work on its socket and reader."""

    _ws: aiohttp.ClientWebSocketResponse[Any] | None
    #: cleared: the reader stops reading the socket (set again: it reads on)
    _reading: asyncio.Event
    _app_closed: bool

    if TYPE_CHECKING:
        def _require_ws(self) -> aiohttp.ClientWebSocketResponse[Any]: ...

        async def _teardown(self, code: int = 1000) -> None: ...

    def pause_reading(self) -> None:
        """Stop reading the socket entirely (a frozen tab): back-pressure builds up.

        Not even protocol pings are answered meanwhile: the server's writes fill
        its outbox, then the TCP windows, as with a browser tab the OS froze.
        """
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def drop(self) -> None:
        """Drop the TCP connection without a close frame, as a network failure would
        (with ``reconnect``, the client then reconnects).

        Through aiohttp's public ``get_extra_info("socket")``, not the transport behind
        its private ``_response``: the connection is shut down both ways, which sends
        the FIN a dead link or a killed process would, and the client's own reader
        sees the end of the stream at once, with no close code (1006), as after a real
        drop. The shutdown goes through a duplicate of the descriptor because the
        loop's socket wrapper may refuse it (uvloop's does); a shutdown applies to the
        connection, whichever descriptor asks, and closing the duplicate closes nothing
        else.
        """
        ws = self._ws
        sock = ws.get_extra_info("socket") if ws is not None else None
        if sock is None or sock.fileno() < 0:
            return
        try:
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    async def kill(self) -> None:
        """Drop the TCP connection without a closing handshake (a crashed peer), for good."""
        self._app_closed = True
        self.drop()
        await self._teardown()

    async def send_text_bytes(self, payload: bytes) -> None:
        """Send a *text* frame carrying any bytes, valid UTF-8 or not (bad-input lessons)."""
        await self._require_ws().send_frame(payload, aiohttp.WSMsgType.TEXT)
