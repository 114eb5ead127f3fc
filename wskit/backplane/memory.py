"""``memory://NAME``: a backplane inside one process, no Redis at all.

Instances that use the same NAME hear each other, whatever thread or event loop
they run on. Useful for lessons that show the backplane's contract without any
server, and for tests of that contract.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

from ..core.envelope import encode as encode_envelope
from ..core.history import MemoryStreams, Page, Repeat, Retention
from .base import Broker, PresenceStore

__all__ = ["MemoryBackplane", "MemoryPresence"]

_lock = threading.Lock()
#: bus name -> channel -> subscribed backplanes
_buses: dict[str, dict[str, set[MemoryBackplane]]] = {}
#: bus name -> the histories of its rooms
_streams: dict[str, MemoryStreams] = {}
#: bus name -> who is in its rooms
_presence: dict[str, MemoryPresence] = {}


class MemoryPresence:
    """The store in plain Python; ``clock`` gives seconds (monotonic by default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._rooms: dict[str, dict[tuple[str, str], float]] = {}

    def _alive(self, room: str, now: float) -> dict[tuple[str, str], float]:
        entries = self._rooms.get(room, {})
        return {k: t for k, t in entries.items() if t > now}

    async def presence_join(self, room: str, user: str, instance: str, ttl: float) -> bool:
        now = self.clock()
        first = not any(u == user for u, _ in self._alive(room, now))
        self._rooms.setdefault(room, {})[(user, instance)] = now + ttl
        return first

    async def presence_leave(self, room: str, user: str, instance: str) -> bool:
        entries = self._rooms.get(room, {})
        entries.pop((user, instance), None)
        last = not any(u == user for u, _ in self._alive(room, self.clock()))
        if not entries:
            self._rooms.pop(room, None)
        return last

    async def presence_refresh(self, room: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        now = self.clock()
        entries = self._rooms.setdefault(room, {})
        expired = [k for k, t in entries.items() if t <= now]
        for key in expired:
            del entries[key]
        for user in users:
            entries[(user, instance)] = now + ttl
        alive = {u for u, _ in entries}
        gone = list(dict.fromkeys(u for u, _ in expired if u not in alive))
        if not entries:
            self._rooms.pop(room, None)
        return gone

    async def presence_list(self, room: str) -> list[str]:
        return self.users(room)

    def users(self, room: str) -> list[str]:
        """The users with a live entry in ``room``, sorted (synchronous)."""
        return sorted({u for u, _ in self._alive(room, self.clock())})


class _Locked:
    """A bus's :class:`MemoryPresence`, each call whole under the bus lock (instances
    of one bus may run on several threads; MemoryPresence never suspends)."""

    def __init__(self, store: MemoryPresence) -> None:
        self.store = store

    async def presence_join(self, key: str, user: str, instance: str, ttl: float) -> bool:
        with _lock:
            return await self.store.presence_join(key, user, instance, ttl)

    async def presence_leave(self, key: str, user: str, instance: str) -> bool:
        with _lock:
            return await self.store.presence_leave(key, user, instance)

    async def presence_refresh(self, key: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        with _lock:
            return await self.store.presence_refresh(key, users, instance, ttl)

    async def presence_list(self, key: str) -> list[str]:
        with _lock:
            return await self.store.presence_list(key)


class MemoryBackplane(Broker):
    def __init__(self, name: str = "default") -> None:
        super().__init__()
        self.name = name
        self.url = f"memory://{name}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: set[str] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        await self.subscriptions.stop()
        self.subscriptions.forget()
        self._set_subscribed(set())
        self._loop = None

    @property
    def streams(self) -> MemoryStreams:
        with _lock:
            return _streams.setdefault(self.name, MemoryStreams())

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        streams = self.streams
        with _lock:  # offset and publication in one step: published in offset order
            stored = streams.append(key, frame_text, retention, time.monotonic(), once, sig)
            if not isinstance(stored, Repeat):
                self._publish_locked(channel, encode_envelope(origin, frame_text, *stored,
                                                              sig=sig))
        return stored

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        return self.streams.read(key, retention, time.monotonic(), after=after, last=last)

    @property
    def presence(self) -> PresenceStore:
        """The bus's presence store (one per bus name, like its streams)."""
        with _lock:
            store = _presence.setdefault(self.name, MemoryPresence())
        return _Locked(store)

    async def publish(self, channel: str, data: str) -> int:
        with _lock:
            return self._publish_locked(channel, data)

    def _publish_locked(self, channel: str, data: str) -> int:
        """Publish; the caller holds ``_lock``."""
        targets = list(_buses.get(self.name, {}).get(channel, ()))
        for bp in targets:
            loop = bp._loop
            if loop is None:
                continue
            # Delivery is asynchronous, as over a network: the publisher never
            # runs a receiver's code inside its own call.
            if loop is self._loop:
                loop.call_soon(bp._dispatch, channel, data)
            else:
                loop.call_soon_threadsafe(bp._dispatch, channel, data)
        return len(targets)

    async def _apply(self, add: set[str], remove: set[str]) -> bool:
        self._set_subscribed((self._subscribed | add) - remove)
        return True

    def _set_subscribed(self, wanted: set[str]) -> None:
        with _lock:
            bus = _buses.setdefault(self.name, {})
            for channel in wanted - self._subscribed:
                bus.setdefault(channel, set()).add(self)
            for channel in self._subscribed - wanted:
                subs = bus.get(channel)
                if subs is not None:
                    subs.discard(self)
                    if not subs:
                        del bus[channel]
            if not bus:
                _buses.pop(self.name, None)
        self._subscribed = wanted
