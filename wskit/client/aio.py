"""A small wskit client for notebooks, scripts, tests and lessons.

Async::

    async with wskit.connect(server, user="alice") as alice:
        await alice.join("lobby")
        await alice.send("lobby", "hello")
        frame = await alice.receive(timeout=2)

Sync (scripts): :class:`wskit.SyncClient` (:mod:`wskit.client.sync`).

A background reader answers the server's ``ping`` frames (unless told to play
a "zombie": ``answer_pings = False``), routes replies to the request that asked
(every request carries a ``ref``), and queues everything else for
:meth:`Client.receive`.

This module is the API. The I/O under it is :class:`wskit.client.link.Link`;
the rules are sans-I/O: the frames come from :mod:`wskit.core.protocol`'s
builders, the recovery bookkeeping (offsets, epochs, dedupe, rejoins) is
:class:`wskit.core.tracker.RoomTracker`, the reconnect policy
:mod:`wskit.core.reconnect`. Targets and tokens are :mod:`wskit.client.dialer`;
the lesson hooks (``pause_reading``, ``drop``, ``kill``) :mod:`wskit.client.lessons`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from ..core import protocol
from ..exceptions import ConnectionClosed
from .frames import decode as _decode  # noqa: F401  (the course's heartbeat check reads frames)
from .lessons import LessonHooks
from .link import Link

__all__ = ["Client", "connect"]

Frame = dict[str, Any]


class Client(Link, LessonHooks):
    """One WebSocket connection to a wskit server.

    ``Client(target, user=..., token=..., reconnect=..., ...)``: see :class:`Link`
    for the arguments (``target`` is a ws:// URL, a handle from :func:`wskit.serve`,
    or a list of either to cycle through on reconnects).
    """

    async def connect(self) -> Client:
        """Open the connection and wait for the server's ``welcome`` frame.

        Raises :class:`ConnectionClosed` if the server closes instead (4001 for a
        bad token) and ``aiohttp.WSServerHandshakeError`` if it refuses the
        upgrade (403 for a foreign Origin).
        """
        await self._start()
        return self

    @property
    def user(self) -> str | None:
        return self.welcome.get("userId")

    @property
    def instance(self) -> str | None:
        return self.welcome.get("instance")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def rooms(self) -> dict[str, dict[str, Any]]:
        """Rooms joined: roomId -> {"offset": last offset seen, "epoch": its epoch}."""
        return self._tracker.rooms

    @property
    def lost(self) -> list[str]:
        """Rooms whose rejoin said ``recovered: false``, that got a new epoch, or where a
        gap could not be filled (a ``gap`` event), in order."""
        return self._tracker.lost

    @property
    def repairs(self) -> int:
        """Gaps in offsets noticed while connected and filled from the history."""
        return self._tracker.repairs

    async def __aenter__(self) -> Client:
        if self._ws is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------

    def join(self, room: str) -> Awaitable[Frame]:
        return self.request(protocol.join_request(room))

    def leave(self, room: str) -> Awaitable[Frame]:
        return self.request(protocol.leave_request(room))

    async def send(self, room: str, content: protocol.Content, *,
                   id: str | None = None) -> Frame:
        """Post to a room; returns the ``sent`` acknowledgement (with the message id
        and, with history on, its offset).

        Every post carries an id (``id``, or a random one), so sending it again is
        harmless: the server answers a repeat with the first ``sent`` and delivers
        nothing new (docs/protocol.md, "Post ids"). With ``reconnect=True`` that is
        what happens when the connection drops before the reply: the post may or may
        not have landed, so it is sent again, with its id, once the client is back in
        its rooms, and this call returns that one ``sent``.
        """
        frame = protocol.post_request(room, content, id=id or secrets.token_hex(8))
        while True:
            generation = self._generation
            try:
                return await self.request(frame)
            except ConnectionClosed:
                if not self.reconnect or self._app_closed:
                    raise
            await self._back_in_rooms(generation)  # ConnectionClosed if closed for good

    def direct(self, to: str, content: str) -> Awaitable[Frame]:
        return self.request(protocol.direct_request(to, content))

    async def presence(self, room: str) -> list[str]:
        """Who is in ``room`` (joined) on any instance."""
        return list((await self.request(protocol.presence_request(room)))["users"])

    # -- receiving -----------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> Frame:
        """The next frame that is not a reply to a request (nor a ping).

        Raises ``TimeoutError`` after ``timeout`` seconds (default: the client's),
        :class:`ConnectionClosed` once the connection is closed and drained.
        """
        frame = await self._inbox.get(timeout or self.timeout)
        if frame is None:
            raise self._closed_error()
        return frame

    async def expect(self, kind: str, timeout: float | None = None) -> Frame:
        """Receive until a frame of type ``kind`` arrives; skip others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            frame = await self.receive(timeout=max(0.0, deadline - loop.time()) or 1e-3)
            if frame.get("type") == kind:
                return frame

    def drain(self) -> list[Frame]:
        """Every frame already received and not yet taken, without waiting."""
        return self._inbox.drain()

    def __aiter__(self) -> AsyncIterator[Frame]:
        """Frames until the connection closes (no timeout)."""
        return self._inbox.__aiter__()

    async def wait_pings(self, count: int, timeout: float | None = None) -> None:
        """Wait until ``count`` app-level pings in all have arrived."""
        async def _wait() -> None:
            while self.pings < count:
                if self.closed:
                    raise self._closed_error()
                self._ping_seen.clear()
                await self._ping_seen.wait()  # also set when the connection closes
        await asyncio.wait_for(_wait(), timeout or self.timeout)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is connected (again, after a drop); ConnectionClosed
        if it closed for good."""
        async def _wait() -> None:
            waits = {asyncio.ensure_future(self._connected.wait()),
                     asyncio.ensure_future(self._closed.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in waits:
                    fut.cancel()
                await asyncio.wait(waits)
            if not self._connected.is_set():
                raise self._closed_error()
        await asyncio.wait_for(_wait(), timeout or self.timeout)

    async def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait until the server closes the connection; return the close code."""
        await asyncio.wait_for(self._closed.wait(), timeout or self.timeout)
        return self.close_code

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000) -> None:
        """Close cleanly (idempotent)."""
        await self._teardown(code)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self._ws is not None else "new")
        return f"<wskit.Client user={self.user!r} {state}>"


class _Connector:
    """``await connect(...)`` and ``async with connect(...)`` both work."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._client.connect().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


def connect(target: Any, **kwargs: Any) -> _Connector:
    """Connect to a server (a ws:// URL or a handle from :func:`wskit.serve`).

    Keyword arguments are :class:`Client`'s: ``user=`` (a token is issued with
    the handle's secret, or ``secret=``), ``token=``, ``answer_pings=``...
    """
    return _Connector(Client(target, **kwargs))

