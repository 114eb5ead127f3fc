"""Offsets, history and recovery for one server: :class:`RoomLog`.

Where a post gets its offset (the backplane's atomic append, or an in-process
store for a standalone server), and how a (re)joining connection is given what
it missed with no gap and no duplicate across the switch from history to live:

1. the connection is a member of the room and its backplane subscription is
   confirmed, so every later post reaches this instance;
2. from that moment, live posts of that room for *that connection* are
   buffered (:meth:`RoomLog.intercept`) instead of delivered;
3. the history is read: the room's top offset T, its epoch, and the retained
   entries after the client's offset;
4. without any await in between, the caller delivers ``joined``, then the
   replayed entries, then the buffered live posts with an offset above T
   (those at or below T were in the history it read), and the buffer goes.

Subscribing *after* reading would lose a post published between the two; this
order cannot. (Centrifugo's recovery works the same way.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..core.history import MemoryStreams, Page, Retention, is_recovered, with_offset
from ..core.protocol import Since
from ..exceptions import BackplaneUnavailable
from .connection import Connection, Outgoing
from .relay import Relay

__all__ = ["RoomLog", "Rejoin"]


@dataclass
class Rejoin:
    """What a join found: the fields of ``joined``, and what to deliver after it."""

    fields: dict[str, Any] = field(default_factory=dict)
    replay: list[Outgoing] = field(default_factory=list)
    live: list[Outgoing] = field(default_factory=list)
    error: BackplaneUnavailable | None = None


class RoomLog:
    def __init__(self, retention: Retention, relay: Relay | None) -> None:
        self.retention = retention
        self.relay = relay
        self._local = MemoryStreams() if relay is None else None
        #: (connection, room) -> live posts held back while its history is read
        self.buffers: dict[tuple[Connection, str], list[tuple[int, Outgoing]]] = {}

    def append_here(self, room: str, text: str, once: str | None = None) -> tuple[int, str]:
        """Store a post of a standalone server (no backplane); its ``(offset, epoch)``,
        or a :class:`~wskit.core.history.Repeat` for an id stored before.

        No await happens here, so the caller delivers posts in offset order. With a
        backplane, posts are stored by :meth:`Relay.post_room` instead.
        """
        assert self._local is not None, "with a backplane, posts are stored by the relay"
        return self._local.append(room, text, self.retention, _now(), once)

    async def read(self, room: str, *, after: int | None = None,
                   last: int | None = None) -> Page:
        if self.relay is not None:
            return await self.relay.read_room(room, self.retention, after=after, last=last)
        assert self._local is not None
        return self._local.read(room, self.retention, _now(), after=after, last=last)

    def intercept(self, target: Connection, room: str, offset: int, frame: Outgoing) -> bool:
        """Hold a live post back if ``target`` is rejoining ``room``; True if held."""
        held = self.buffers.get((target, room))
        if held is None:
            return False
        held.append((offset, frame))
        return True

    async def join(self, conn: Connection, room: str, since: Since | None) -> Rejoin:
        """Steps 1-3 above for a connection already made a member of ``room``."""
        key = (conn, room)
        self.buffers[key] = []
        try:
            if self.relay is not None:
                await self.relay.settle()
            page = await self.read(room, after=since.offset if since else None)
        except BackplaneUnavailable as exc:
            held = self.buffers.pop(key)
            return Rejoin(live=[frame for _, frame in held], error=exc)
        except BaseException:
            self.buffers.pop(key, None)
            raise
        held = self.buffers.pop(key)
        result = Rejoin(fields={"offset": page.top, "epoch": page.epoch})
        if since is not None:
            result.fields["recovered"] = is_recovered(page, since.offset, since.epoch)
            if since.epoch == page.epoch:  # another epoch's offsets mean nothing here
                result.replay = [Outgoing(with_offset(e.text, e.offset, page.epoch))
                                 for e in page.entries]
        result.live = [frame for offset, frame in held if offset > page.top]
        return result


def _now() -> float:
    return asyncio.get_running_loop().time()
