"""Room history: offsets, epochs, retention, and the rule for "recovered".

Plain code, no I/O. Every room post gets an **offset**: an integer per room that
starts at 1 and grows by exactly 1 per post, the same on every instance (it is
assigned where the message is stored: one Lua script on Redis, one locked call
here for ``memory://`` and standalone servers). A room's history has an
**epoch**: a string naming this history's lifetime. When the history is lost (a
Redis restarted without persistence, a room idle past its TTL) the next post
starts a new epoch at offset 1, so a client holding an old ``(offset, epoch)``
can tell that it cannot be given what it missed.

A post may carry an **id** chosen by its sender (docs/protocol.md): the store
remembers it beside the offset, and a repeat of the same id by the same user is
answered with the first post's offset (:class:`Repeat`) and stored and published
nothing. That is what makes a retry safe when a reply was lost: the post may or
may not have landed, and only the store can tell. An id is remembered while its
post is retained (the room's last ``size`` posts) and, however busy the room, for
at least :data:`ID_WINDOW` seconds after it was made, as long as the history
itself lives (``ttl`` after its last post).

The model follows Centrifugo's history and recovery (a stream per channel with a
top offset and an epoch); the names are wskit's.
"""

from __future__ import annotations

import json
import random
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .envelope import with_offset  # re-exported: where the splice used to live

__all__ = ["Retention", "Entry", "Page", "MemoryStreams", "Repeat", "ID_WINDOW", "once_token",
           "with_offset", "new_epoch", "is_recovered"]

#: a post's id is remembered at least this many seconds, however busy its room
ID_WINDOW = 120.0


class Repeat(NamedTuple):
    """What storing a post whose id its user already posted gives: nothing was
    stored or published; ``offset`` is the first post's. (A tuple, as the
    ``(offset, epoch)`` of a stored post is.)"""

    offset: int
    epoch: str


def once_token(user: str, post_id: str) -> str:
    """The key a post's id is remembered under: ids are per user (a JSON pair, so
    no user and id can spell another pair)."""
    return json.dumps([user, post_id])


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
    #: its writer's signature (:mod:`wskit.security.signing`); '' for none
    sig: str = ""


@dataclass
class Page:
    """What a history read found: the room's position and some retained entries."""

    epoch: str
    top: int
    entries: list[Entry] = field(default_factory=list)
    #: the oldest offset still retained (``top + 1`` when nothing is)
    oldest: int = 1
    #: the epoch's offsets start above this: a history that took a new epoch on a
    #: failover keeps its counter (entries at or below it are of the epoch before)
    base: int = 0


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
    __slots__ = ("epoch", "top", "entries", "touched", "ids")

    def __init__(self, epoch: str, size: int, now: float) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: deque[Entry] = deque(maxlen=size)
        self.touched = now
        #: post ids remembered: token -> (offset, when), oldest first
        self.ids: dict[str, tuple[int, float]] = {}

    def forget_ids(self, size: int, now: float, budget: int) -> None:
        """Drop up to ``budget`` of the oldest ids whose post is no longer retained
        and older than :data:`ID_WINDOW` (the rule of the Redis append script)."""
        ids = self.ids
        while ids and budget > 0:
            token, (offset, when) = next(iter(ids.items()))
            if when > now - ID_WINDOW or offset > self.top - size:
                return
            del ids[token]
            budget -= 1


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

    def append(self, key: str, text: str, retention: Retention, now: float,
               once: str | None = None, sig: str = "") -> tuple[int, str]:
        """Store one frame; its ``(offset, epoch)``, or a :class:`Repeat` when
        ``once`` (a :func:`once_token`) was stored before and is still remembered."""
        with self._lock:
            room = self._live(key, retention, now)
            if room is None:
                room = self._rooms[key] = _Room(self._unborn(key, retention, now),
                                                retention.size, now)
            if once is not None:
                prior = room.ids.get(once)
                if prior is not None:
                    return Repeat(prior[0], room.epoch)
            room.top += 1
            room.entries.append(Entry(room.top, text, sig))
            if once is not None:
                room.forget_ids(retention.size, now, 2)
                room.ids[once] = (room.top, now)
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
