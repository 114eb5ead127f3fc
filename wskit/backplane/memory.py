"""``memory://NAME``: a backplane inside one process, no Redis at all.

Instances that use the same NAME hear each other, whatever thread or event loop
they run on. Useful for lessons that show the backplane's contract without any
server, and for tests of that contract.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from ..core.history import MemoryStreams, Page, Retention
from ..server.presence import MemoryPresence
from .base import Backplane, encode_envelope

__all__ = ["MemoryBackplane"]

_lock = threading.Lock()
#: bus name -> channel -> subscribed backplanes
_buses: dict[str, dict[str, set[MemoryBackplane]]] = {}
#: bus name -> the histories of its rooms
_streams: dict[str, MemoryStreams] = {}
#: bus name -> who is in its rooms
_presence: dict[str, MemoryPresence] = {}


class MemoryBackplane(Backplane):
    def __init__(self, name: str = "default") -> None:
        super().__init__()
        self.name = name
        self.url = f"memory://{name}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: set[str] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._wanted.clear()
        await self._apply(set())
        self._loop = None

    @property
    def streams(self) -> MemoryStreams:
        with _lock:
            return _streams.setdefault(self.name, MemoryStreams())

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention) -> tuple[int, str]:
        streams = self.streams
        with _lock:  # offset and publication in one step: published in offset order
            offset, epoch = streams.append(key, frame_text, retention, time.monotonic())
            self._publish_locked(channel, encode_envelope(origin, frame_text, offset, epoch))
        return offset, epoch

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        return self.streams.read(key, retention, time.monotonic(), after=after, last=last)

    @property
    def presence(self) -> MemoryPresence:
        """The bus's presence store (one per bus name, like its streams)."""
        with _lock:
            return _presence.setdefault(self.name, MemoryPresence())

    # MemoryPresence never suspends, so each call runs whole under the bus lock
    # (instances of one bus may run on several threads)

    async def presence_join(self, key: str, user: str, instance: str, ttl: float) -> bool:
        store = self.presence
        with _lock:
            return await store.presence_join(key, user, instance, ttl)

    async def presence_leave(self, key: str, user: str, instance: str) -> bool:
        store = self.presence
        with _lock:
            return await store.presence_leave(key, user, instance)

    async def presence_refresh(self, key: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        store = self.presence
        with _lock:
            return await store.presence_refresh(key, list(users), instance, ttl)

    async def presence_list(self, key: str) -> list[str]:
        store = self.presence
        with _lock:
            return await store.presence_list(key)

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

    async def _apply(self, wanted: set[str]) -> None:
        self._set_subscribed(wanted)

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
