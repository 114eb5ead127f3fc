"""Joining and leaving rooms, and what a member may ask of its room.

:class:`Membership` answers ``join`` (with history and recovery when history is
on: :class:`~wskit.server.recovery.RoomLog`), ``leave``, ``history`` and ``presence``
requests, and lets go of what a closing connection held. Who is where lives in
the :class:`~wskit.core.hub.Hub`; this module turns requests into hub changes,
subscription intents (:class:`~wskit.server.relay.Relay`) and presence intents
(:class:`~wskit.server.presence.Presence`), and answers each request exactly once.
"""

from __future__ import annotations

from dataclasses import replace

from ..core import protocol
from ..core.envelope import with_offset, with_raw
from ..core.hub import Hub
from ..exceptions import BackplaneUnavailable
from .connection import Connection
from .delivery import bus_down
from .metrics import Counts
from .positions import Positions
from .presence import Presence
from .recovery import RoomLog
from .relay import Relay
from .settings import Settings

__all__ = ["Membership"]


class Membership:
    """One server's room requests (see the module docstring); it shares the
    server's hub, relay, room log and presence."""

    def __init__(self, settings: Settings, hub: Hub[Connection], relay: Relay | None,
                 log: RoomLog | None, presence: Presence) -> None:
        self.settings = settings
        self.hub = hub
        self.relay = relay
        self.log = log
        self.presence = presence
        self.stats = Counts()  # the server's, once it is made
        #: where each room stands here (the server's, with a backplane and history)
        self.positions: Positions | None = None

    async def join(self, conn: Connection, req: protocol.Join) -> None:
        rooms = self.settings.rooms
        if rooms is not None and req.room not in rooms:
            conn.deliver(protocol.error_frame(
                "unknown_room", f"no room {req.room!r} on this server; rooms: "
                + ", ".join(sorted(rooms)), req.ref))
            return
        limit = self.settings.max_rooms_per_connection
        if (limit is not None and not self.hub.is_member(conn, req.room)
                and len(self.hub.rooms_of(conn)) >= limit):
            conn.deliver(protocol.error_frame(
                "too_many_rooms", f"a connection may be in at most {limit} rooms; leave "
                "one first", req.ref))
            return
        self.stats.joins += 1
        if self.hub.join(conn, req.room) and self.relay is not None:
            self.relay.room_opened(req.room)
        self.presence.want(req.room, conn.user)
        if self.log is None:
            if self.relay is not None:
                # also when the room already existed: its subscription may still be
                # waiting for confirmation from an earlier joiner's settle
                await self.relay.settle()
            conn.deliver(protocol.reply("joined", req.ref, roomId=req.room))
            return
        rejoin = await self.log.join(conn, req.room, req.since)  # settles, then reads
        fields = rejoin.fields
        if rejoin.error is not None:
            fields = {"partial": {"code": "history_unavailable",
                                  "message": f"joined without history: {bus_down(rejoin.error)}"}}
            if req.since is not None:
                fields["recovered"] = False
        self.stats.rejoined(fields.get("recovered"))
        # no await from here on: joined, what was missed, then what came meanwhile
        conn.deliver(protocol.reply("joined", req.ref, roomId=req.room, **fields))
        for frame in rejoin.replay:
            conn.deliver(frame)
        for frame in rejoin.live:
            conn.deliver(frame)
        if self.positions is not None and rejoin.error is None and self.hub.is_member(
                conn, req.room):
            self.positions.joined(conn, req.room, fields["epoch"], fields["offset"])

    async def history(self, conn: Connection, req: protocol.History) -> None:
        if self.log is None:
            conn.deliver(protocol.error_frame(
                "history_unavailable", "history is off on this server (history_size 0)",
                req.ref))
            return
        if not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined", f"join room {req.room!r} to read its history", req.ref))
            return
        try:
            if req.after is not None:  # a gap being repaired: the first ``limit`` after it
                page = await self.log.read(req.room, after=req.after)
                if req.limit is not None:
                    page = replace(page, entries=page.entries[:req.limit])
            else:
                page = await self.log.read(req.room, last=req.limit or self.log.retention.size)
        except BackplaneUnavailable as exc:
            conn.deliver(protocol.error_frame("history_unavailable", bus_down(exc), req.ref))
            return
        self.stats.history_reads += 1
        messages = ",".join(with_offset(e.text, e.offset, page.epoch) for e in page.entries)
        head = protocol.reply("history", req.ref, roomId=req.room, offset=page.top,
                              epoch=page.epoch)
        conn.deliver(with_raw(head, f'"messages":[{messages}]'))

    def leave(self, conn: Connection, req: protocol.Leave) -> None:
        if not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined", f"you are not in room {req.room!r}", req.ref))
            return
        emptied = self.hub.leave(conn, req.room)
        if self.positions is not None:
            self.positions.left(conn, req.room)
            if emptied:
                self.positions.forget(req.room)
        if emptied and self.relay is not None:
            self.relay.room_emptied(req.room)
            self.relay.settle_soon()
        if not self.hub.user_in_room(conn.user, req.room):
            self.presence.unwant(req.room, conn.user)
        conn.deliver(protocol.reply("left", req.ref, roomId=req.room))

    async def who(self, conn: Connection, req: protocol.PresenceQuery) -> None:
        if not self.hub.is_member(conn, req.room):
            conn.deliver(protocol.error_frame(
                "not_joined", f"join room {req.room!r} to see who is in it", req.ref))
            return
        try:
            users = await self.presence.users(req.room)
        except BackplaneUnavailable as exc:
            conn.deliver(protocol.error_frame("backplane_unavailable", bus_down(exc),
                                              req.ref))
            return
        conn.deliver(protocol.reply("presence", req.ref, roomId=req.room, users=users))

    def depart(self, conn: Connection) -> None:
        """``conn`` is closing: out of every room; presence and the subscriptions of
        the rooms (and the user) it leaves behind empty are let go."""
        departure = self.hub.remove(conn)
        positions = self.positions
        for room in departure.rooms:
            if not self.hub.user_in_room(departure.user, room):
                self.presence.unwant(room, departure.user)
            if positions is not None:
                positions.left(conn, room)
        if positions is not None:
            for room in departure.rooms_emptied:
                positions.forget(room)
        relay = self.relay
        if relay is None or not departure.user:
            return
        # intents now, in hub order; applying them may wait
        for room in departure.rooms_emptied:
            relay.room_emptied(room)
        if departure.user_gone:
            relay.user_gone(departure.user)
        if departure.rooms_emptied or departure.user_gone:
            relay.settle_soon()
