"""Who is in a room on any instance: presence, and its join/leave events.

The store holds, per room, one entry per (user, instance) with an expiry. Each live
instance refreshes its own entries every third of ``presence_ttl``; an instance
that dies (SIGKILL, a lost host) stops refreshing, and its users vanish from every
answer once their entries expire, without anyone having to notice the death. The
instance that next refreshes that room removes the expired entries and announces
the users who are now gone. (Centrifugo's presence works the same way: a hash of
client entries with per-entry expiry, refreshed by the node that owns them.)

What this instance *wants* stored is always the hub's state, (room, user) pairs
with at least one local connection. :class:`Presence` records that intent
synchronously when the hub changes and a single worker makes the store match it,
in order, exactly like the backplane's subscriptions: a close's "leave" can never
overtake a later join of the same user's other tab.

The store answers "was this the user's first entry in the room, on any instance"
and "was it the last" atomically (a Lua script on Redis), which is what the
``presence`` events need: one ``join`` when the user's first connection anywhere
joins, one ``leave`` when its last one leaves or its instance dies.

:class:`~wskit.backplane.base.PresenceStore` is the store's interface (a broker
offers one as its ``presence``); :class:`~wskit.backplane.memory.MemoryPresence`
is the store in plain Python, with the clock passed in: the standalone server,
``memory://`` and the tests use it; Redis and fakeredis run the scripts of
:mod:`wskit.backplane.scripts`. Both names are importable from here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..backplane.base import PresenceStore
from ..backplane.memory import MemoryPresence
from ..exceptions import BackplaneUnavailable

log = logging.getLogger("wskit.presence")

__all__ = ["MemoryPresence", "PresenceStore", "Presence"]


#: ``announce(room, user, event)``: tell the room's members, here and elsewhere
Announce = Callable[[str, str, str], None]


class Presence:
    """Keeps one instance's entries in a :class:`PresenceStore` equal to its hub.

    The server calls :meth:`want` and :meth:`unwant` synchronously when a user's
    first connection here joins a room or its last one here leaves; a single
    worker applies the changes in that order.
    """

    def __init__(self, store: PresenceStore, instance: str, ttl: float,
                 announce: Announce | None) -> None:
        self.store = store
        self.instance = instance
        self.ttl = ttl
        self._announce = announce
        #: (room, user) pairs with a connection here: what the store should hold
        self.wanted: set[tuple[str, str]] = set()
        #: what the store holds for this instance, as far as we know
        self.applied: set[tuple[str, str]] = set()
        #: pairs changed since the worker last looked, in order of first change
        self._pending: dict[tuple[str, str], None] = {}
        self._worker: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._paused = False
        #: one store operation sequence at a time: a refresh must never re-add an
        #: entry that a concurrent leave just removed
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name=f"wskit-presence-{self.instance}")

    def pause(self) -> None:
        """Record changes but apply none until :meth:`stop` (a draining server closes
        every connection at once: their store round trips wait until the closes are out)."""
        self._paused = True

    async def stop(self) -> None:
        """Apply what is pending, then remove this instance's entries, announcing the
        users that leave (a clean stop vanishes at once; a killed instance after the TTL)."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait({self._refresher})
            self._refresher = None
        await self.idle()
        self._paused = False
        await self._apply()
        async with self._lock:
            for room, user in sorted(self.applied):
                try:
                    last = await self.store.presence_leave(room, user, self.instance)
                except BackplaneUnavailable:
                    break  # the entries expire on their own
                if last:
                    self._tell(room, user, "leave")
            self.applied.clear()

    async def idle(self) -> None:
        while self._worker is not None and not self._worker.done():
            await asyncio.wait({self._worker})

    def want(self, room: str, user: str) -> None:
        self.wanted.add((room, user))
        self._changed((room, user))

    def unwant(self, room: str, user: str) -> None:
        self.wanted.discard((room, user))
        self._changed((room, user))

    def _changed(self, key: tuple[str, str]) -> None:
        self._pending[key] = None
        if self._paused:
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._apply(), name=f"wskit-presence-apply-{self.instance}")

    async def users(self, room: str) -> list[str]:
        """Who is in ``room`` anywhere: the store's answer, corrected by what this
        instance has not applied yet. Raises BackplaneUnavailable."""
        stored = set(await self.store.presence_list(room))
        here = {u for r, u in self.wanted if r == room}
        stale = {u for r, u in self.applied if r == room} - here
        return sorted((stored - stale) | here)

    async def _apply(self) -> None:
        async with self._lock:
            while self._pending:
                key = next(iter(self._pending))
                del self._pending[key]
                room, user = key
                try:
                    if key in self.wanted and key not in self.applied:
                        first = await self.store.presence_join(room, user, self.instance,
                                                               self.ttl)
                        self.applied.add(key)
                        if first:
                            self._tell(room, user, "join")
                    elif key not in self.wanted and key in self.applied:
                        last = await self.store.presence_leave(room, user, self.instance)
                        self.applied.discard(key)
                        if last:
                            self._tell(room, user, "leave")
                except BackplaneUnavailable as exc:
                    # kept as wished: the next refresh tick tries again
                    self._pending[key] = None
                    log.debug("presence update deferred: %s", exc)
                    return

    def _tell(self, room: str, user: str, event: str) -> None:
        if self._announce is not None:
            self._announce(room, user, event)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)  # a period, not a synchronisation
            await self.refresh()

    async def refresh(self) -> None:
        """Extend this instance's entries, announce users whose instance died, and
        retry whatever an outage deferred."""
        async with self._lock:
            rooms: dict[str, list[str]] = {}
            for room, user in self.applied:
                rooms.setdefault(room, []).append(user)
            for room, users in sorted(rooms.items()):
                try:
                    gone = await self.store.presence_refresh(room, sorted(users),
                                                             self.instance, self.ttl)
                except BackplaneUnavailable as exc:
                    log.debug("presence refresh failed: %s", exc)
                    return
                for user in gone:
                    self._tell(room, user, "leave")
        if self._pending:
            self._changed(next(iter(self._pending)))
