"""Where each room stands on this instance, and the repair of what it missed.

Offsets make a loss visible; this makes it good again, for every client, while
connected (issue: "no silent gap"). A post with history on reaches an instance
only over its backplane subscription, and a subscription can be down (a dropped
listener connection, a restarted Redis): whatever was published meanwhile is
never heard. :class:`Positions` keeps, per room with members here, the epoch and
the last offset delivered from the bus, and repairs a room whenever it may be
behind:

* **a jump**: a post arrives with an offset above the next one, or under a new
  epoch;
* **a listener reconnect**: the backplane says its subscriptions were lost and
  are back (``Broker.on_resubscribed``); a quiet room would show no jump;
* **a join that read a higher top** than delivered here;
* **periodically** (``position_check`` s): the store's top is read per room and
  compared (what Centrifugo's position checks do), for a loss nobody noticed.

A repair holds the room's live posts, reads the history after the last delivered
offset, and, with no await in between, delivers the missing entries, then the
held posts, each once, in offset order. Which path delivers an offset first
(the bus or a repair) does not matter: the other finds it at or below the
position and drops it. What the history no longer holds stays a visible jump, for
the client to report (``wskit.Client`` announces it as a ``gap``). A history found
under a new epoch (a failover, while this instance was not listening) is read
from where that epoch starts (``Page.base``): its posts are delivered under it.

A connection that joined while this instance was behind got the room's history up
to the top it read: a *floor* (its join's top) keeps it from receiving those
offsets twice. A post's own sender is not sent its post back by a repair (the
history stores the frame, not who sent it, so own posts are remembered until the
bus or a repair passes them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..core.history import Page, with_offset
from ..exceptions import BackplaneUnavailable
from .connection import Connection
from .relay import Inbound

log = logging.getLogger("wskit.server")

__all__ = ["Positions"]

#: own posts remembered while not yet heard back (a long listener outage while a
#: local sender posts); past this the oldest are forgotten (a repair may then echo
#: one to its sender, who drops it: its offset was in ``sent``)
_OWN_LIMIT = 10_000


#: ``deliver(post, floors)``: fan the post out to the room's members here, but
#: not to a connection whose floor is at or above its offset
Deliver = Callable[[Inbound, "dict[Connection, int] | None"], None]
#: ``read(room, after)``: the room's history after ``after`` (``after`` None: only
#: its position)
Read = Callable[[str, "int | None"], Awaitable[Page]]


class Positions:
    """Per room: ``(epoch, offset)`` delivered here; repairs when behind."""

    def __init__(self, deliver: Deliver, read: Read) -> None:
        self._deliver = deliver
        self._read = read
        self._at: dict[str, tuple[str, int]] = {}
        #: rooms under repair -> live posts held meanwhile
        self._held: dict[str, list[Inbound]] = {}
        #: room -> connection -> the top its join read (only while above the room's)
        self.floors: dict[str, dict[Connection, int]] = {}
        #: (room, offset) of own posts not yet heard back -> the sending connection id
        self._own: dict[tuple[str, int], str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: repairs run, and offsets they delivered (for tests and /metrics)
        self.repairs = 0
        self.repaired = 0

    def __contains__(self, room: str) -> bool:
        return room in self._at

    def at(self, room: str) -> tuple[str, int] | None:
        return self._at.get(room)

    # -- what the server tells us ------------------------------------------------

    def arrived(self, post: Inbound) -> None:
        """A room post with an offset and epoch from the bus: deliver it, hold it (a
        repair runs), or drop it (had)."""
        held = self._held.get(post.target)
        if held is not None:
            held.append(post)
            return
        at = self._at.get(post.target)
        assert post.offset is not None and post.epoch is not None
        if at is not None and (at[0] != post.epoch or post.offset > at[1] + 1):
            # a jump, or a new epoch (a failover: its first posts may not have been
            # heard here, and its offsets go on from where it started): fetch first
            self._held[post.target] = [post]
            self._spawn(self._repair(post.target, at))
            return
        self._pass(post)

    def joined(self, conn: Connection, room: str, epoch: str, top: int) -> None:
        """``conn``'s join read the room at ``top``: it has everything up to there."""
        at = self._at.get(room)
        if at is None or at[0] != epoch:
            self._at[room] = (epoch, top)
            return
        if top > at[1]:  # the store is ahead of what arrived here: we are behind
            self.floors.setdefault(room, {})[conn] = top
            self.check(room)

    def posted(self, room: str, offset: int, sender: str) -> None:
        """A local connection's post was stored at ``offset`` (its ``sent``)."""
        at = self._at.get(room)
        if at is not None and offset > at[1]:
            if len(self._own) >= _OWN_LIMIT:
                del self._own[next(iter(self._own))]
            self._own[(room, offset)] = sender

    def left(self, conn: Connection, room: str) -> None:
        floors = self.floors.get(room)
        if floors is not None:
            floors.pop(conn, None)
            if not floors:
                del self.floors[room]

    def forget(self, room: str) -> None:
        """No member here any more: the room is no longer followed."""
        self._at.pop(room, None)
        self.floors.pop(room, None)
        for key in [k for k in self._own if k[0] == room]:
            del self._own[key]

    # -- checks --------------------------------------------------------------

    def check(self, room: str) -> None:
        """Repair ``room`` now if it is followed and no repair runs."""
        at = self._at.get(room)
        if at is not None and room not in self._held:
            self._held[room] = []
            self._spawn(self._repair(room, at))

    def check_all(self) -> None:
        """Repair every followed room (the listener reconnected: anything may be missing)."""
        for room in list(self._at):
            self.check(room)

    async def compare(self) -> int:
        """Read each followed room's top; repair those the store is ahead in. Returns
        how many were behind (the periodic position check)."""
        behind = 0
        for room in list(self._at):
            try:
                page = await self._read(room, None)
            except BackplaneUnavailable:
                return behind  # the next check, or the reconnect, will see it
            at = self._at.get(room)
            if at is not None and (at[0] != page.epoch or page.top > at[1]):
                behind += 1
                self.check(room)
        return behind

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.idle()

    # -- internals -----------------------------------------------------------

    def _pass(self, post: Inbound) -> bool:
        """Deliver ``post`` unless it is at or below the room's position; whether it was."""
        room, offset, epoch = post.target, post.offset, post.epoch
        assert offset is not None and epoch is not None
        if self._own:
            self._own.pop((room, offset), None)
        at = self._at.get(room)
        if at is not None and at[0] == epoch and offset <= at[1]:
            return False  # delivered here already (by a repair, or the bus)
        self._at[room] = (epoch, offset)
        floors = self.floors.get(room)
        self._deliver(post, floors)
        if floors is not None:
            self._lower(room, offset)
        return True

    def _lower(self, room: str, offset: int) -> None:
        """Floors at or below the room's position say nothing more: drop them."""
        floors = self.floors.get(room)
        if floors is not None:
            for conn in [c for c, top in floors.items() if top <= offset]:
                del floors[conn]
            if not floors:
                del self.floors[room]

    async def _repair(self, room: str, at: tuple[str, int]) -> None:
        epoch, after = at
        try:
            page = await self._read(room, after)
            if page.epoch != epoch and page.base < after:
                # a new epoch (a failover) whose offsets start below ours: what it
                # holds was not heard here either
                page = await self._read(room, page.base)
        except BackplaneUnavailable as exc:
            log.warning("room %r: could not read its history to repair a gap (%s); "
                        "the next position check tries again", room, exc)
            page = None
        except BaseException:
            self._release(room)
            raise
        # no await from here on: the missing entries, then what was held, in order
        held = self._held.pop(room, [])
        if room not in self._at:
            return  # its last member left meanwhile
        self.repairs += 1
        if page is not None:
            for entry in page.entries:
                # an entry at or below a new epoch's base was written in the old one
                of = epoch if page.epoch == epoch or entry.offset <= page.base else page.epoch
                if self._pass(Inbound("room", room, with_offset(entry.text, entry.offset, of),
                                      entry.offset, self._own.get((room, entry.offset)),
                                      epoch=of)):
                    self.repaired += 1
            if page.epoch != epoch and self._at[room][0] == epoch:
                self._at[room] = (page.epoch, page.top)  # a new epoch with nothing to give
        for post in held:
            self._pass(post)  # a jump left here is what the history lost: visible

    def _release(self, room: str) -> None:
        for post in self._held.pop(room, []):
            self._pass(post)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="wskit-room-repair")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
