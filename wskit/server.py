"""The framework-independent chat server: what happens to every frame.

:class:`ChatServer` owns one :class:`~wskit.hub.Hub` (who is where), one optional
:class:`~wskit.backplane.Backplane` (the other instances) and the
:class:`~wskit.connection.Connection` of every client. Adapters call exactly two
things: :meth:`ChatServer.origin_allowed` before the upgrade, and
:meth:`ChatServer.serve_connection` after it. Everything else (auth, parsing,
rooms, fan-out, heartbeats, errors, cleanup) happens here, once, for both
frameworks.

Delivery order of a room post: local receivers first (straight into their
outboxes, one encoding shared by all), then one publish to the backplane, then
the ``sent`` acknowledgement to the sender. Local delivery does not depend on
Redis, so an outage degrades the system to "this instance only", and the sender
is told so with a ``backplane_unavailable`` error frame.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any, Coroutine, Optional, Union

from . import protocol
from .auth import resolve_secret, verify_token
from .backplane import Backplane, decode_envelope, encode_envelope, from_url
from .connection import Connection, Outgoing, Transport, close_within
from .exceptions import AuthError, BackplaneUnavailable, ProtocolError
from .heartbeat import Heartbeat
from .hub import Hub
from .protocol import CloseCode
from .settings import Settings

log = logging.getLogger("wskit.server")

__all__ = ["ChatServer"]

# closes decided by the server about one client: one line each, never a storm
_WORTH_A_LOG_LINE = {CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SLOW_CONSUMER,
                     CloseCode.UNSUPPORTED_DATA, CloseCode.INTERNAL_ERROR}


class ChatServer:
    """One wskit instance. Start it, hand it connections, stop it.

    ``backplane`` is a :class:`Backplane`, a URL (``memory://``, ``fakeredis://``,
    ``redis://...``, ``"none"``), or None for the default (``WSKIT_REDIS_URL``,
    else the in-process fakeredis).
    """

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        backplane: Union[Backplane, str, None] = None,
        **overrides: Any,
    ) -> None:
        settings = settings or Settings()
        if overrides:
            settings = settings.with_(**overrides)
        self.settings = settings
        self.secret = resolve_secret(settings.secret)
        name = settings.instance_name or "wskit"
        self.instance_id = f"{name}-{uuid.uuid4().hex[:6]}"
        self.hub: Hub[Connection] = Hub()
        self.backplane: Optional[Backplane] = (
            backplane if isinstance(backplane, Backplane) else from_url(backplane)
        )
        self._prefix = f"{settings.namespace}:"
        self._connections: set[Connection] = set()
        self._heartbeats: dict[Connection, Heartbeat] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._started = False

    def __repr__(self) -> str:
        bp = self.backplane.url if self.backplane else "none"
        return (f"<ChatServer {self.instance_id} connections={len(self.hub)} "
                f"rooms={len(self.hub.rooms())} backplane={bp}>")

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Connect the backplane. Raises BackplaneUnavailable where it is called."""
        if self._started:
            return
        if self.backplane is not None:
            self.backplane.on_message = self._on_backplane_message
            await self.backplane.start()
        self._started = True

    async def stop(self, code: int = CloseCode.GOING_AWAY, reason: str = "server stopping") -> None:
        """Close every connection (pending frames are flushed first), then the backplane."""
        await asyncio.gather(*(c.close(code, reason, flush=True) for c in list(self._connections)))
        await self.settled()
        if self.backplane is not None:
            await self.backplane.stop()
        self._started = False

    async def settled(self) -> None:
        """Wait until background bookkeeping (unsubscribing after a close) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def __aenter__(self) -> ChatServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handshake -----------------------------------------------------------

    def origin_allowed(self, origin: Optional[str]) -> bool:
        """Cross-Site WebSocket Hijacking guard, checked before the upgrade.

        Browsers always send ``Origin`` on a WebSocket handshake and a page
        cannot forge it; non-browser clients usually send none and are let
        through (they could forge any header anyway; the token is what
        authenticates them).
        """
        allowed = self.settings.origins
        return allowed is None or origin is None or origin in allowed

    def authenticate(self, token: Optional[str]) -> str:
        return verify_token(token, self.secret)

    # -- one connection ------------------------------------------------------

    async def serve_connection(self, transport: Transport, token: Optional[str]) -> None:
        """Run one accepted WebSocket from first frame to last; never raises.

        A missing or bad token closes with 4001 and the reason (after the
        upgrade, because a browser cannot read the status of a refused one).
        """
        try:
            user = self.authenticate(token)
        except AuthError as exc:
            if not await close_within(transport, CloseCode.UNAUTHORIZED, str(exc),
                                      self.settings.close_timeout):
                transport.abort()
            return
        conn = Connection(transport, user, outbox_limit=self.settings.outbox_limit,
                          outbox_bytes=self.settings.outbox_bytes,
                          close_timeout=self.settings.close_timeout, on_close=self._on_close)
        self._connections.add(conn)
        reader: Optional[asyncio.Task[None]] = None
        try:
            first = self.hub.add(conn, user)
            conn.start()
            if first and self.backplane is not None:
                await self.backplane.subscribe(self._user_channel(user))
            conn.deliver(self._welcome(conn))
            self._start_heartbeat(conn)
            reader = asyncio.get_running_loop().create_task(
                self._read_loop(conn), name=f"wskit-reader-{conn.id}")
            # The reader ends when the client closes; the connection can also be
            # closed from elsewhere (outbox full, heartbeat, server stop), and then
            # the reader is cancelled rather than left waiting on a silent peer.
            await asyncio.wait({reader, conn.closed_future}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                # wait() rather than await: our own cancellation, if any, must propagate
                await asyncio.wait({reader})
            await conn.close(CloseCode.NORMAL)
            self._connections.discard(conn)

    async def _read_loop(self, conn: Connection) -> None:
        receive = conn.transport.receive
        while not conn.closing:
            data = await receive()
            if data is None:
                return
            if isinstance(data, bytes):
                conn.close_soon(CloseCode.UNSUPPORTED_DATA,
                                "binary frames are not supported; send JSON text frames")
                return
            try:
                await self.handle_text(conn, data)
            except Exception:
                # A bug, not bad input (bad input gets an error frame): close this
                # connection with 1011 and keep serving everyone else.
                log.exception("internal error handling a frame from %s", conn.id)
                conn.close_soon(CloseCode.INTERNAL_ERROR, "internal server error")
                return

    def _welcome(self, conn: Connection) -> str:
        s = self.settings
        heartbeat = ({"interval": s.ping_interval, "timeout": s.ping_timeout}
                     if s.ping_interval else None)
        return protocol.encode({
            "type": "welcome", "userId": conn.user, "connectionId": conn.id,
            "instance": self.instance_id, "heartbeat": heartbeat,
            "maxMessageSize": s.max_message_size,
        })

    def _start_heartbeat(self, conn: Connection) -> None:
        s = self.settings
        if s.ping_interval is None or s.ping_timeout is None or conn.closing:
            return
        hb = Heartbeat(conn.deliver, conn.close_soon, s.ping_interval, s.ping_timeout)
        self._heartbeats[conn] = hb
        hb.start()

    def _on_close(self, conn: Connection) -> None:
        """Called once, synchronously, when a connection starts closing."""
        if conn.close_code in _WORTH_A_LOG_LINE:
            log.info("closing %s (user %r) with %s: %s", conn.id, conn.user, conn.close_code,
                     conn.close_reason)
        hb = self._heartbeats.pop(conn, None)
        if hb is not None:
            hb.stop()
        departure = self.hub.remove(conn)
        if self.backplane is None or not departure.user:
            return
        channels = [self._room_channel(r) for r in departure.rooms_emptied]
        if departure.user_gone:
            channels.append(self._user_channel(departure.user))
        if channels:
            self._spawn(self._unsubscribe(channels))

    # -- frames --------------------------------------------------------------

    async def handle_text(self, conn: Connection, text: str) -> None:
        """Act on one text frame from ``conn``; bad input earns an error frame."""
        try:
            request = protocol.parse(text)
        except ProtocolError as exc:
            conn.deliver(protocol.error_frame(exc.code, exc.message))
            return
        kind = type(request)
        if kind is protocol.Post:
            await self._post(conn, request)
        elif kind is protocol.Pong:
            hb = self._heartbeats.get(conn)
            if hb is not None:
                hb.pong()
        elif kind is protocol.Join:
            await self._join(conn, request)
        elif kind is protocol.Leave:
            await self._leave(conn, request)
        elif kind is protocol.Direct:
            await self._direct(conn, request)
        elif kind is protocol.Ping:
            conn.deliver(protocol.reply("pong", request.ref))

    async def _post(self, conn: Connection, req: protocol.Post) -> None:
        if self.settings.post_requires_join and not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined",
                f"you have not joined room {req.room!r}; send "
                f'{{"type": "join", "roomId": "{req.room}"}} first', req.ref))
            return
        mid, now = self._next_id(), time.time()
        text = protocol.encode({"type": "message", "roomId": req.room, "userId": conn.user,
                                "content": req.content, "timestamp": now, "id": mid})
        frame = Outgoing(text)  # encoded once, for every receiver
        for target in self.hub.room_targets(req.room, exclude=conn):
            target.deliver(frame)
        if self.backplane is not None:
            try:
                await self.backplane.publish(self._room_channel(req.room),
                                             encode_envelope(self.instance_id, text))
            except BackplaneUnavailable as exc:
                conn.deliver(self._backplane_error(exc, req.ref))
        conn.deliver(protocol.reply("sent", req.ref, id=mid, roomId=req.room, timestamp=now))

    async def _direct(self, conn: Connection, req: protocol.Direct) -> None:
        mid, now = self._next_id(), time.time()
        text = protocol.encode({"type": "direct", "from": conn.user, "to": req.to,
                                "content": req.content, "timestamp": now, "id": mid})
        # The recipient's connections, and the sender's other tabs (a conversation
        # shows in every tab of both users); never the sending connection itself.
        users = [req.to] if req.to == conn.user else [req.to, conn.user]
        frame = Outgoing(text)  # encoded once for every tab of both users
        envelope = encode_envelope(self.instance_id, text)
        reached, bus_down, unknown = 0, self.backplane is None, False
        for user in users:
            reached += self._to_local_user(conn, user, frame)
            if bus_down:
                continue
            try:
                reached += await self._to_remote_user(user, envelope)
            except BackplaneUnavailable as exc:
                conn.deliver(self._backplane_error(exc, req.ref))  # once, not per user
                bus_down = unknown = True  # who is elsewhere is unknown: never say "offline"
        if reached == 0 and not unknown:
            conn.deliver(protocol.error_frame(
                "user_offline", f"user {req.to!r} has no open connection", req.ref))
            return
        conn.deliver(protocol.reply("sent", req.ref, id=mid, to=req.to, timestamp=now))

    def _to_local_user(self, sender: Connection, user: str, frame: Outgoing) -> int:
        """Deliver to ``user``'s connections on this instance (not the sender's own)."""
        reached = 0
        for target in self.hub.user_targets(user):
            if target is not sender:
                target.deliver(frame)
                reached += 1
        return reached

    async def _to_remote_user(self, user: str, envelope: str) -> int:
        """Publish to ``user``'s channel; how many *other* instances heard it."""
        assert self.backplane is not None
        instances = await self.backplane.publish(self._user_channel(user), envelope)
        # when the user has a connection here, our own subscription heard it too
        return instances - (1 if self.hub.user_targets(user) else 0)

    async def _join(self, conn: Connection, req: protocol.Join) -> None:
        rooms = self.settings.rooms
        if rooms is not None and req.room not in rooms:
            conn.deliver(protocol.error_frame(
                "unknown_room", f"no room {req.room!r} on this server; rooms: "
                + ", ".join(sorted(rooms)), req.ref))
            return
        if not self.hub.is_member(conn, req.room):
            created = self.hub.join(conn, req.room)
            if created and self.backplane is not None:
                await self.backplane.subscribe(self._room_channel(req.room))
        conn.deliver(protocol.reply("joined", req.ref, roomId=req.room))

    async def _leave(self, conn: Connection, req: protocol.Leave) -> None:
        if not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined", f"you are not in room {req.room!r}", req.ref))
            return
        emptied = self.hub.leave(conn, req.room)
        if emptied and self.backplane is not None:
            await self._unsubscribe([self._room_channel(req.room)])
        conn.deliver(protocol.reply("left", req.ref, roomId=req.room))

    # -- backplane -----------------------------------------------------------

    def _room_channel(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    def _user_channel(self, user: str) -> str:
        return f"{self._prefix}user:{user}"

    async def _unsubscribe(self, channels: list[str]) -> None:
        assert self.backplane is not None
        for channel in channels:
            await self.backplane.unsubscribe(channel)

    def _on_backplane_message(self, channel: str, data: str) -> None:
        try:
            origin, frame = decode_envelope(data)
        except ValueError as exc:
            log.warning("dropped a malformed envelope on %s: %s", channel, exc)
            return
        if origin == self.instance_id:
            return  # delivered locally when it was posted
        kind, _, key = channel[len(self._prefix):].partition(":")
        if kind == "room":
            targets = self.hub.room_targets(key)
        elif kind == "user":
            targets = self.hub.user_targets(key)
        else:
            return
        if targets:
            outgoing = Outgoing(protocol.encode(frame))
            for target in targets:
                target.deliver(outgoing)

    @staticmethod
    def _backplane_error(exc: Exception, ref: Any) -> str:
        return protocol.error_frame(
            "backplane_unavailable",
            f"delivered to this instance only; other instances did not receive it ({exc})", ref)

    # -- helpers -------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self.instance_id}-{next(self._ids)}"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections)

