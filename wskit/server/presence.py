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
in order, with the same helper as the broker's subscriptions
(:class:`~wskit.backplane.reconcile.Reconciler`): a close's "leave" can never
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
from ..backplane.reconcile import Reconciler
from ..exceptions import BackplaneUnavailable

log = logging.getLogger("wskit.presence")

__all__ = ["MemoryPresence", "PresenceStore", "Presence"]


#: ``announce(room, user, event)``: tell the room's members, here and elsewhere
Announce = Callable[[str, str, str], None]


class Presence:
    """Keeps one instance's entries in a :class:`PresenceStore` equal to its hub.

    The server calls :meth:`want` and :meth:`unwant` synchronously when a user's
    first connection here joins a room or its last one here leaves; one worker (a
    :class:`~wskit.backplane.reconcile.Reconciler`, as for the broker's
    subscriptions) applies the changes in that order, one at a time.
    """

    def __init__(self, store: PresenceStore, instance: str, ttl: float,
                 announce: Announce | None) -> None:
        self.store = store
        self.instance = instance
        self.ttl = ttl
        self._announce = announce
        #: (room, user) pairs with a connection here (``wanted``: what the store
        #: should hold) and what it holds for this instance as far as we know
        #: (``applied``)
        self.entries: Reconciler[tuple[str, str]] = Reconciler(
            self._apply, name=f"wskit-presence-apply-{instance}", batch=False)
        self._refresher: asyncio.Task[None] | None = None
        #: one store operation sequence at a time: a refresh must never re-add an
        #: entry that a concurrent leave just removed
        self._lock = asyncio.Lock()

    @property
    def wanted(self) -> set[tuple[str, str]]:
        return self.entries.wanted

    @property
    def applied(self) -> set[tuple[str, str]]:
        return self.entries.applied

    def start(self) -> None:
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name=f"wskit-presence-{self.instance}")

    def pause(self) -> None:
        """Record changes but apply none until :meth:`stop` (a draining server closes
        every connection at once: their store round trips wait until the closes are out)."""
        self.entries.pause()

    async def stop(self) -> None:
        """Apply what is pending, then remove this instance's entries, announcing the
        users that leave (a clean stop vanishes at once; a killed instance after the TTL)."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait({self._refresher})
            self._refresher = None
        self.entries.resume()
        await self.entries.settle()
        async with self._lock:
            for room, user in sorted(self.applied):
                try:
                    last = await self.store.presence_leave(room, user, self.instance)
                except BackplaneUnavailable:
                    break  # the entries expire on their own
                if last:
                    self._tell(room, user, "leave")
            self.applied.clear()
        await self.entries.stop()

    async def idle(self) -> None:
        await self.entries.idle()

    def want(self, room: str, user: str) -> None:
        self.entries.want((room, user))

    def unwant(self, room: str, user: str) -> None:
        self.entries.unwant((room, user))

    async def users(self, room: str) -> list[str]:
        """Who is in ``room`` anywhere: the store's answer, corrected by what this
        instance has not applied yet. Raises BackplaneUnavailable."""
        stored = set(await self.store.presence_list(room))
        here = {u for r, u in self.wanted if r == room}
        stale = {u for r, u in self.applied if r == room} - here
        return sorted((stored - stale) | here)

    async def _apply(self, changes: list[tuple[tuple[str, str], bool]]) -> int:
        """The entries' ``apply``: a join or a leave, announced if it was the user's
        first or last entry anywhere; 0 when the store is unreachable (the next
        refresh tick retries)."""
        async with self._lock:
            for done, ((room, user), on) in enumerate(changes):
                try:
                    if on:
                        if await self.store.presence_join(room, user, self.instance, self.ttl):
                            self._tell(room, user, "join")
                    elif await self.store.presence_leave(room, user, self.instance):
                        self._tell(room, user, "leave")
                except BackplaneUnavailable as exc:
                    log.debug("presence update deferred: %s", exc)
                    return done
            return len(changes)

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
        self.entries.retry()
