"""Room history: offsets, epochs, retention, and the rule for "recovered".

Plain code, no I/O. Every room post gets an **offset**: an integer per room that
starts at 1 and grows by exactly 1 per post, the same on every instance (it is
assigned where the message is stored: one Lua script on Redis, one locked call
here for ``memory://`` and standalone servers). A room's history has an
**epoch**: a string naming this history's lifetime. When the history is lost (a
Redis restarted without persistence, a room idle past its TTL) the next post
starts a new epoch at offset 1, so a client holding an old ``(offset, epoch)``
can tell that it cannot be given what it missed.

The model follows Centrifugo's history and recovery (a stream per channel with a
top offset and an epoch); the names are wskit's.
"""

from __future__ import annotations

import random
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field

from .envelope import with_offset  # re-exported: where the splice used to live

__all__ = ["Retention", "Entry", "Page", "MemoryStreams", "with_offset", "new_epoch",
           "is_recovered"]


@dataclass(frozen=True)
class Retention:
    """How much of a room's history is kept: ``size`` messages, ``ttl`` s after the last post."""

    size: int = 100
    ttl: float = 3600.0


@dataclass(frozen=True)
class Entry:
    offset: int
    #: the frame's text *without* its offset (see :func:`~wskit.core.envelope.with_offset`)
    text: str


@dataclass
class Page:
    """What a history read found: the room's position and some retained entries."""

    epoch: str
    top: int
    entries: list[Entry] = field(default_factory=list)
    #: the oldest offset still retained (``top + 1`` when nothing is)
    oldest: int = 1


def new_epoch() -> str:
    """A fresh epoch: it only has to differ from the history's previous ones, not be
    secret, so a fast PRNG serves (a post's append carries a candidate epoch)."""
    return f"{random.getrandbits(32):08x}"


def is_recovered(page: Page, since_offset: int, since_epoch: str) -> bool:
    """True when ``page`` (read after ``since_offset``) holds *everything* after it."""
    if since_epoch != page.epoch or since_offset > page.top:
        return False
    return since_offset == page.top or page.oldest <= since_offset + 1


class _Room:
    __slots__ = ("epoch", "top", "entries", "touched")

    def __init__(self, epoch: str, size: int, now: float) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: deque[Entry] = deque(maxlen=size)
        self.touched = now


class MemoryStreams:
    """Every room's history in this process (``memory://`` and standalone servers).

    Thread-safe: ``memory://`` buses are shared across threads' event loops.
    ``now`` is passed in (monotonic seconds), so expiry is tested without sleeping.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._lock = threading.Lock()
        #: names this store's lifetime in unborn epochs (as a Redis server's run_id)
        self._lifetime = f"{random.getrandbits(64):016x}"

    def _unborn(self, key: str, retention: Retention, now: float) -> str:
        """The epoch a history that does not exist will be born with (the rule of the
        Redis scripts, wskit.backplane.scripts): the same for every read until its
        first post, never the epoch of a history that has expired (it lived ``ttl``
        s at least, so the next one is born in a later period)."""
        period = int(now // retention.ttl) if retention.ttl > 0 else 0
        return f"{zlib.crc32(f'{key}|{self._lifetime}|{period}'.encode()):08x}"

    def _live(self, key: str, retention: Retention, now: float) -> _Room | None:
        room = self._rooms.get(key)
        if room is not None and now - room.touched > retention.ttl:
            del self._rooms[key]  # expired: its epoch is gone with it
            room = None
        if room is not None:
            if room.entries.maxlen != retention.size:
                room.entries = deque(room.entries, maxlen=retention.size)
            room.touched = now
        return room

    def append(self, key: str, text: str, retention: Retention, now: float) -> tuple[int, str]:
        """Store one frame; its ``(offset, epoch)``."""
        with self._lock:
            room = self._live(key, retention, now)
            if room is None:
                room = self._rooms[key] = _Room(self._unborn(key, retention, now),
                                                retention.size, now)
            room.top += 1
            room.entries.append(Entry(room.top, text))
            return room.top, room.epoch

    def read(self, key: str, retention: Retention, now: float, *,
             after: int | None = None, last: int | None = None) -> Page:
        """Entries with offset > ``after``, or the ``last`` K, or none (position only).

        A room with no history stays without one: nothing is stored for it."""
        with self._lock:
            room = self._live(key, retention, now)
            if room is None:
                return Page(self._unborn(key, retention, now), 0, [], 1)
            entries = list(room.entries)
            oldest = entries[0].offset if entries else room.top + 1
            if after is not None:
                entries = [e for e in entries if e.offset > after]
            elif last is not None:
                entries = entries[-last:] if last > 0 else []
            else:
                entries = []
            return Page(room.epoch, room.top, entries, oldest)
