"""The I/O under :class:`wskit.Client`: one logical connection across reconnects.

:class:`Link` owns the socket of the moment, the reader task that routes what
arrives (a ping answered, a reply to its request, anything else to the inbox,
after the :class:`~wskit.core.tracker.RoomTracker` has seen it), and the cycle
that reconnects and rejoins. :class:`wskit.client.aio.Client` is the API on top.

Why one reader task (the server has none, see wskit.server.chat): a client's
replies must be matched while its owner awaits something else, a ``receive()``
or nothing at all, and its pings answered even when nobody reads.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl as ssl_module
from typing import Any

import aiohttp

from ..core import protocol
from ..core.reconnect import Backoff, should_reconnect
from ..core.tracker import RoomTracker
from ..exceptions import ClientStateError, ConnectionClosed, ServerError
from .dialer import Dialer, TokenSource
from .frames import Inbox, decode
from .refresh import Refresher

__all__ = ["Link"]

log = logging.getLogger("wskit.client")

_PONG = protocol.encode(protocol.pong_request())
_IGNORED = (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG)
_TRACKED = ("message", "joined", "left", "sent")
Frame = dict[str, Any]


class Link:
    """A connection's state, its reader and its reconnects (no public API of its own)."""

    def __init__(self, target: Any, *, user: str | None = None,
                 token: str | TokenSource | None = None,
                 secret: str | None = None, answer_pings: bool = True,
                 headers: dict[str, str] | None = None, timeout: float = 5.0,
                 max_msg_size: int = 4 * 1024 * 1024, protocol_pongs: bool = True,
                 welcome: bool = True, reconnect: bool = False,
                 backoff: Backoff | None = None,
                 max_attempts: int | None = None,
                 ssl: ssl_module.SSLContext | None = None) -> None:
        self._dialer = Dialer(target, user=user, token=token, secret=secret, headers=headers,
                              max_msg_size=max_msg_size, protocol_pongs=protocol_pongs,
                              ssl=ssl, backoff=backoff, max_attempts=max_attempts)
        self.url = self._dialer.first_url()
        #: reconnect after an unexpected close (see wskit.core.reconnect), rejoining rooms
        #: with ``since`` so that missed messages are delivered, in order, once
        self.reconnect = reconnect
        self._tracker = RoomTracker()
        #: successful reconnections so far
        self.reconnects = 0
        self.answer_pings = answer_pings
        self.timeout = timeout
        self.welcome: Frame = {}
        #: app-level pings received so far (answered or not)
        self.pings = 0
        #: server frames that were not JSON objects (ignored, logged)
        self.bad_frames = 0
        #: wait for wskit's welcome frame on connect (False for other servers, e.g. the seed's)
        self.expect_welcome = welcome
        self.close_code: int | None = None
        self.close_reason = ""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        #: gap repairs under way (RoomTracker: a history fetch per gap)
        self._repairs: set[asyncio.Task[None]] = set()
        self._inbox = Inbox()
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._refs = itertools.count(1)
        self._app_closed = False
        self._ping_seen = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        #: connections that rejoined their rooms so far, and an event set at each
        #: (and at the end): what a post resent after a drop waits for
        self._generation = 0
        self._rejoined = asyncio.Event()
        #: refreshes the token before ``welcome["expiresAt"]`` (wskit.client.refresh)
        self.refresher: Refresher | None = None

    async def _start(self) -> None:
        """Open the socket, start the reader, take the ``welcome`` (see Client.connect)."""
        self._session = aiohttp.ClientSession()
        try:
            self.url = await self._dialer.fresh_url(self.url)
            self._ws = await self._dialer.open(self._session, self.url, self.timeout)
            self._reader = asyncio.get_running_loop().create_task(self._run())
            if not self.expect_welcome:
                return
            first = await self._inbox.get(self.timeout)
            if first is None:
                raise self._closed_error()
            if first.get("type") != "welcome":
                raise ClientStateError(f"expected a welcome frame, got {first!r:.200} "
                                       "(welcome=False for a server that sends none)")
        except BaseException:
            await self._teardown()
            raise
        self.welcome = first
        if self._dialer.can_refresh_token():
            # self is a Client here: the refresher uses its request and wait_* methods
            self.refresher = Refresher(self, self._dialer.new_token).start()

    # -- requests ------------------------------------------------------------

    async def request(self, frame: Frame, timeout: float | None = None) -> Frame:
        """Send a frame with a fresh ``ref`` and return the server's reply to it.

        An ``error`` reply raises :class:`ServerError`.
        """
        ref = f"r{next(self._refs)}"
        self._tracker.sending(frame)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self.send_raw({**frame, "ref": ref})
            reply = await asyncio.wait_for(future, timeout or self.timeout)
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise ServerError(reply.get("code", "?"), reply.get("message", ""), reply)
        return reply

    async def send_raw(self, data: str | bytes | Frame) -> None:
        """Send anything, valid or not: a dict as JSON, a str as text, bytes as binary.

        :class:`ConnectionClosed` if the connection is closing or gone (with
        ``reconnect``, :meth:`wait_connected` and send again).
        """
        ws = self._require_ws()
        try:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            elif isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_str(json.dumps(data))
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionClosed.of(ws.close_code, f"send failed: {exc}") from exc

    # -- the reader ----------------------------------------------------------

    async def _run(self) -> None:
        """Read until the connection ends; with ``reconnect``, come back and rejoin."""
        ws = self._require_ws()
        try:
            while True:
                self._connected.set()
                await self._read_loop(ws)
                self._connected.clear()
                self._fail_pending()
                if self._app_closed or not self.reconnect or not should_reconnect(
                        self.close_code, fresh_token=self._dialer.can_refresh_token()):
                    return
                assert self._session is not None
                back = await self._dialer.redial(self._session, self.timeout)
                if back is None:
                    if self._dialer.refused_code is not None:
                        self.close_code = self._dialer.refused_code
                    return
                ws = self._ws = back.ws
                self.url, self.welcome = back.url, back.welcome
                self.close_code, self.close_reason = None, ""
                self.reconnects += 1
                self._inbox.put({"type": "reconnected", "instance": back.welcome.get("instance"),
                                 "attempts": back.attempts})
                self._rejoin = asyncio.get_running_loop().create_task(self._rejoin_rooms())
        finally:
            if self._rejoin is not None and not self._rejoin.done():
                self._rejoin.cancel()
                await asyncio.wait({self._rejoin})
            self._closed.set()
            self._ping_seen.set()
            self._rejoined.set()
            self._fail_pending()
            self._inbox.end()

    def _closed_error(self) -> ConnectionClosed:
        """The exception for "closed" now: OK after a goodbye, Error after anything else.

        After the application's own ``close()`` the reader is stopped before it can
        note the code, so the code the socket ended with stands in for it.
        """
        code = self.close_code
        if code is None and self._app_closed and self._ws is not None:
            code = self._ws.close_code
        return ConnectionClosed.of(code, self.close_reason)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._closed_error())

    async def _rejoin_rooms(self) -> None:
        """Rejoin every room with ``since``: the server replays what was missed."""
        try:
            for frame in self._tracker.rejoin_requests():
                try:
                    await self.request(frame)
                except (ConnectionClosed, ServerError, asyncio.TimeoutError) as exc:
                    log.info("rejoining %s failed: %r", frame["roomId"], exc)
                    return
        finally:
            self._generation += 1
            self._rejoined.set()

    async def _back_in_rooms(self, generation: int) -> None:
        """Wait until a connection newer than ``generation`` has rejoined its rooms
        (so a resent post is not refused as "not joined"); :class:`ConnectionClosed`
        when the link closed for good instead."""
        while self._generation == generation:
            if self._closed.is_set():
                raise self._closed_error()
            self._rejoined.clear()
            await self._rejoined.wait()

    async def _repair(self, request: Frame) -> None:
        """Fetch the messages of a gap; hand them, then the held ones, to the inbox."""
        room, after = request["roomId"], request["after"]
        try:
            reply: Frame | None = await self.request(request)
        except ConnectionClosed:
            if self.reconnect and not self._app_closed:
                return  # the rejoin's replay (since the last offset seen) fills the gap
            reply = None
        except (ServerError, asyncio.TimeoutError) as exc:
            log.info("repairing a gap in %s failed: %r", room, exc)
            reply = None
        events, messages, again = self._tracker.repaired(room, after, reply)
        for frame in events + messages:
            self._inbox.put(frame)
        if again is not None:  # a gap opened while this one was read
            await self._repair(again)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type in _IGNORED:
                        continue  # binary, or protocol pings when autoping is off
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        self.close_reason = msg.extra or ""
                    break  # CLOSE, CLOSING, CLOSED, ERROR
                frame = decode(msg.data)
                if frame is None:
                    self.bad_frames += 1
                    log.warning("ignored a server frame that is not a JSON object: %.80r",
                                msg.data)
                    continue
                await self._dispatch(ws, frame)
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.close_reason = self.close_reason or str(exc)
        finally:
            self.close_code = ws.close_code

    async def _dispatch(self, ws: aiohttp.ClientWebSocketResponse[Any], frame: Frame) -> None:
        """A ping is answered; a reply goes to its request; anything else to the inbox."""
        kind = frame.get("type")
        if kind == "ping":
            self.pings += 1
            self._ping_seen.set()
            if self.answer_pings:
                await ws.send_str(_PONG)
            return
        if kind in _TRACKED:
            verdict = self._tracker.received(frame)
            for event in verdict.events:
                self._inbox.put(event)
            if verdict.repair is not None:  # a gap: fetch it (the reader must not wait)
                task = asyncio.get_running_loop().create_task(self._repair(verdict.repair))
                self._repairs.add(task)
                task.add_done_callback(self._repairs.discard)
            if not verdict.deliver:
                return  # a duplicate across a reconnect, or held while a gap is repaired
        ref = frame.get("ref")
        future = self._pending.get(ref) if isinstance(ref, str) else None
        if future is not None and not future.done() and kind != "message":
            future.set_result(frame)
        else:
            self._inbox.put(frame)

    # -- closing -------------------------------------------------------------

    async def _teardown(self, code: int = 1000) -> None:
        self._app_closed = True
        self._reading.set()
        for task in list(self._repairs):
            task.cancel()
        if self._repairs:
            await asyncio.wait(set(self._repairs))
        if self.refresher is not None:
            await self.refresher.stop()
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.close(code=code)
            except (aiohttp.ClientError, ConnectionError):
                pass
        if self._reader is not None:
            if not self._reader.done():
                self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _require_ws(self) -> aiohttp.ClientWebSocketResponse[Any]:
        if self._ws is None:
            raise ClientStateError("not connected: await client.connect() first")
        return self._ws
