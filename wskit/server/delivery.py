"""Room posts, presence events and direct messages: from the request to every receiver.

A room post with history on (the default) is stored first: it joins this loop
tick's batch for the backplane (:meth:`wskit.server.relay.Relay.post_room`), which gives
it the room's next offset, and every instance, this one included, delivers it
from the bus, in offset order. With history off, the receivers here get it at
once (straight into their outboxes, one encoding shared by all) and the batch
only publishes it to the other instances. Standalone (no backplane), it is
delivered here at once, with an offset of this instance's when history is on.

Either way the sender's next frame is read without waiting for the round trip,
and every post gets exactly one reply: ``sent``, with ``partial`` when the bus
was down. Local delivery never depends on Redis, so an outage degrades the
system to "this instance only" and says so. Back-pressure: a sender whose
receivers' outboxes are loaded is not read until they drain, and a receiver that
does not read is closed.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from typing import Any

from ..backplane import Sent
from ..core import protocol
from ..core.history import Repeat, once_token, with_offset
from ..core.hub import Hub
from ..core.protocol import CloseCode
from ..exceptions import BackplaneUnavailable
from .connection import Connection, Outgoing
from .metrics import Counts
from .positions import Positions
from .recovery import RoomLog
from .relay import Relay
from .settings import Settings

__all__ = ["Delivery"]

#: a loaded receiver that hands no frame to its socket for this long is not reading
_STALL = 0.25
#: a connection's posts waiting for the backplane at once before its reading pauses
_POSTS_IN_FLIGHT = 64


class Delivery:
    """One server's room posts, presence events and direct messages (see the
    module docstring).

    It shares the server's hub, relay and room log; it owns the message ids and
    each connection's posts waiting for the backplane.
    """

    def __init__(self, settings: Settings, hub: Hub[Connection], relay: Relay | None,
                 log: RoomLog | None, instance_id: str) -> None:
        self.settings = settings
        self.hub = hub
        self.relay = relay
        self.log = log
        self._instance_id = instance_id
        self._ids = itertools.count(1)
        #: each connection's batched posts not yet stored
        self._posting: dict[Connection, _InFlight] = {}
        #: answer ``sent`` even when no one was reached, so no reply tells whether a
        #: user is online (set under every authorization policy but open)
        self.hide_offline = False
        self.stats = Counts()  # the server's, once it is made
        #: where each room stands here (the server's, with a backplane and history)
        self.positions: Positions | None = None

    def next_id(self) -> str:
        return f"{self._instance_id}-{next(self._ids)}"

    def forget(self, conn: Connection) -> None:
        """``conn`` is gone: its posts still complete, but no reply goes out."""
        self._posting.pop(conn, None)

    # -- room posts ------------------------------------------------------------

    async def post(self, conn: Connection, req: protocol.Post) -> None:
        if self.settings.post_requires_join and not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined",
                f"you have not joined room {req.room!r}; send "
                f'{{"type": "join", "roomId": "{req.room}"}} first', req.ref))
            return
        self.stats.posts += 1
        # The sender's id, when it gave one, is the message's: receivers see it, and
        # the store answers a repeat of it (with history on) instead of posting again.
        mid, now = req.id or self.next_id(), time.time()
        once = None if req.id is None else once_token(conn.user, req.id)
        text = protocol.encode({"type": "message", "roomId": req.room, "userId": conn.user,
                                "content": req.content, "timestamp": now, "id": mid})
        targets = self.hub.room_targets(req.room, exclude=conn)
        relay, log = self.relay, self.log
        if relay is None:
            extra: dict[str, Any] = {}
            if log is None:
                self.fan_out(req.room, targets, Outgoing(text), None)
            else:  # standalone with history: offset here, deliver now (in offset order)
                stored = log.append_here(req.room, text, once)
                extra["offset"] = stored[0]
                if not isinstance(stored, Repeat):  # a repeat was delivered the first time
                    self.fan_out(req.room, targets, Outgoing(with_offset(text, *stored)),
                                 stored[0])
            conn.deliver(protocol.reply("sent", req.ref, id=mid, roomId=req.room,
                                        timestamp=now, **extra))
        else:
            if log is None:  # history off: deliver here now, publish for the others
                frame = Outgoing(text)  # encoded once, for every receiver
                self.stats.deliveries += len(targets)
                for target in targets:
                    target.deliver(frame)
            # History on: every instance, this one too, delivers it from the bus, in
            # offset order. Either way the post joins this tick's batch, and the
            # sender's next frame is read without waiting for the round trip.
            pending = self._posting.get(conn)
            if pending is None:
                pending = self._posting[conn] = _InFlight()
            pending.count += 1
            relay.post_room(req.room, text, conn.id, None if log is None else log.retention,
                            functools.partial(self._posted, conn, req, mid, now, text, pending),
                            once)
            if pending.count > _POSTS_IN_FLIGHT:  # back-pressure on the store
                await pending.fewer_than(_POSTS_IN_FLIGHT)
        await self._hold_sender(conn, targets)

    def _posted(self, conn: Connection, req: protocol.Post, mid: str, now: float, text: str,
                pending: _InFlight, result: Sent) -> None:
        """A batched post was stored (or published): reply ``sent``, exactly once."""
        pending.done()
        extra: dict[str, Any] = {}
        if isinstance(result, BackplaneUnavailable):
            extra["partial"] = partial_field(result)
            if self.log is not None:  # not delivered anywhere yet: here, without an offset
                self.fan_out(req.room, self.hub.room_targets(req.room, exclude=conn),
                              Outgoing(text), None)
        elif result is not None:  # stored, or a Repeat: the first post's offset
            extra["offset"] = result[0]
            if self.positions is not None and not isinstance(result, Repeat):
                self.positions.posted(req.room, result[0], conn.id)
        conn.deliver(protocol.reply("sent", req.ref, id=mid, roomId=req.room, timestamp=now,
                                    **extra))

    async def posts_done(self, conn: Connection) -> None:
        """Wait for ``conn``'s batched posts, so replies keep the order of requests."""
        pending = self._posting.get(conn)
        if pending is not None and pending.count:
            await pending.fewer_than(1)

    def fan_out(self, room: str, targets: list[Connection], frame: Outgoing,
                 offset: int | None) -> None:
        """Deliver a room frame; a target rejoining the room gets it after its history."""
        self.stats.deliveries += len(targets)
        log = self.log
        if offset is None or log is None or not log.buffers:
            for target in targets:
                target.deliver(frame)
            return
        for target in targets:
            if not log.intercept(target, room, offset, frame):
                target.deliver(frame)

    async def _hold_sender(self, sender: Connection, targets: list[Connection]) -> None:
        """Back-pressure: read nothing more from ``sender`` while its post's receivers
        are loaded. A loaded receiver that makes no progress for ``_STALL`` s (its
        writer hands nothing to the socket), or has not drained within the grace, is
        not reading: it is closed, so a frozen client pauses its room only briefly."""
        waits: dict[asyncio.Future[None], Connection] = {}
        for conn in (*targets, sender):
            if conn.loaded and not conn.closing:
                fut = conn.drained_future()
                if fut is not None:
                    waits[fut] = conn
        if not waits:
            return
        grace = self.settings.slow_reader_grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hb = sender.heartbeat
        if hb is not None:
            hb.held = True  # its pong may be waiting unread behind its posts
        try:
            while waits:
                progress = {fut: conn.frames_out for fut, conn in waits.items()}
                window = min(_STALL, max(0.0, deadline - loop.time()))
                done, _ = await asyncio.wait(waits, timeout=window)
                for fut in done:
                    del waits[fut]
                over = loop.time() >= deadline
                for fut, conn in list(waits.items()):
                    if over or conn.frames_out == progress[fut]:
                        del waits[fut]
                        conn.close_soon(CloseCode.SLOW_CONSUMER,
                                        "outbox did not drain: the client is not reading")
        finally:
            if hb is not None:
                hb.held = False

    def announce(self, room: str, user: str, event: str) -> None:
        """A user's first connection anywhere joined ``room``, or its last one left:
        tell the members here now, and the other instances over the bus."""
        text = protocol.encode({"type": "presence", "event": event, "roomId": room,
                                "userId": user})
        frame = Outgoing(text)
        for target in self.hub.room_targets(room):
            if target.user != user:  # about others: a user's own tabs know it joined
                target.deliver(frame)
                self.stats.deliveries += 1
        if self.relay is not None:
            self.relay.post_room(room, text, "", None, _ignore)

    # -- direct messages --------------------------------------------------------

    async def direct(self, conn: Connection, req: protocol.Direct) -> None:
        self.stats.directs += 1
        mid, now = self.next_id(), time.time()
        text = protocol.encode({"type": "direct", "from": conn.user, "to": req.to,
                                "content": req.content, "timestamp": now, "id": mid})
        frame = Outgoing(text)  # encoded once for every tab of both users
        # The recipient first: only its connections count as "reached" (the
        # sender's own other tabs never do, else a user with two tabs could
        # never be told "user_offline").
        reached, bus_error = await self._to_user(conn, req.to, frame, text)
        if reached == 0 and not self.hide_offline:
            if bus_error is not None:
                conn.deliver(protocol.error_frame(
                    "backplane_unavailable", f"not delivered: user {req.to!r} has no "
                    f"connection on this instance and {bus_down(bus_error)}", req.ref))
            else:
                conn.deliver(protocol.error_frame(
                    "user_offline", f"user {req.to!r} has no open connection", req.ref))
            return
        if req.to != conn.user:
            # a conversation shows in every tab of both users
            _, own_error = await self._to_user(conn, conn.user, frame, text,
                                               remote=bus_error is None)
            bus_error = bus_error or own_error
        extra = {"partial": partial_field(bus_error)} if bus_error is not None else {}
        conn.deliver(protocol.reply("sent", req.ref, id=mid, to=req.to, timestamp=now, **extra))

    async def _to_user(self, sender: Connection, user: str, frame: Outgoing, text: str,
                       remote: bool = True) -> tuple[int, BackplaneUnavailable | None]:
        """Deliver to ``user``'s connections here and elsewhere (never the sender's own);
        how many connections and instances were reached, and the bus error if any."""
        reached = self._to_local_user(sender, user, frame)
        if self.relay is None or not remote:
            return reached, None
        try:
            return reached + await self._to_remote_user(user, text), None
        except BackplaneUnavailable as exc:
            return reached, exc  # who is elsewhere is unknown: never say "offline"

    def _to_local_user(self, sender: Connection, user: str, frame: Outgoing) -> int:
        """Deliver to ``user``'s connections on this instance (not the sender's own)."""
        reached = 0
        for target in self.hub.user_targets(user):
            if target is not sender:
                target.deliver(frame)
                reached += 1
        self.stats.deliveries += reached
        return reached

    async def _to_remote_user(self, user: str, text: str) -> int:
        """Publish to ``user``'s channel; how many *other* instances heard it."""
        assert self.relay is not None
        instances = await self.relay.publish_user(user, text)
        # when the user has a connection here, our own subscription heard it too
        return instances - (1 if self.hub.user_targets(user) else 0)


class _InFlight:
    """How many of one connection's posts wait for the backplane; its reader waits
    on :meth:`fewer_than` (a counter and one waiter, not a future per post)."""

    __slots__ = ("count", "_below", "_waiter")

    def __init__(self) -> None:
        self.count = 0
        self._below = 0
        self._waiter: asyncio.Future[None] | None = None

    def done(self) -> None:
        self.count -= 1
        waiter = self._waiter
        if waiter is not None and self.count < self._below and not waiter.done():
            waiter.set_result(None)

    async def fewer_than(self, n: int) -> None:
        if self.count < n:
            return
        self._below = n
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _ignore(result: Sent) -> None:
    """A presence event is best effort: a lost one is corrected by the next query."""


def bus_down(exc: BackplaneUnavailable) -> str:
    return f"the cross-instance bus is down ({exc})"


def partial_field(exc: BackplaneUnavailable) -> dict[str, str]:
    """The ``partial`` field of a ``sent`` reply: delivered on this instance only."""
    return {"code": "backplane_unavailable",
            "message": f"delivered on this instance only: {bus_down(exc)}"}
