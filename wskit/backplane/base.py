"""The backplane interface and the envelope every backend carries.

A backplane joins several wskit instances into one chat system. Its interface is
deliberately tiny (after encode/broadcaster): ``start``, ``stop``, ``publish``,
``subscribe``, ``unsubscribe``, and one ``on_message`` callback.

Subscriptions are *intents*: :meth:`Backplane.want` and :meth:`Backplane.unwant`
change the set of wanted channels synchronously, in the order the hub changed, and
:meth:`Backplane.sync` makes the backend match whatever is wanted *when it runs*,
under one lock. An intent is never deferred to a task of its own (that was a race:
a close's queued "unsubscribe" ran after a later join had re-wanted the room and
undid it). ``subscribe`` is ``want`` plus ``sync`` and returns once the backend
confirmed it, so a client that got ``joined`` receives every later post.

Envelope (one JSON object a message, documented in docs/protocol.md)::

    {"origin": "<instance id>", "frame": {...the server frame...}}
    {"origin": "<instance id>", "offset": 17, "epoch": "9f2c01ab", "frame": {...}}

``origin`` lets each instance drop its own publications: it has delivered them
locally already, so nothing is delivered twice. A room post with history on
carries its ``offset``; such envelopes are delivered by *every* subscribed
instance, the publisher's included, in the order the backend published them,
which is offset order (see :meth:`Backplane.append`).

History (:meth:`Backplane.append`, :meth:`Backplane.read`) lives in the
backplane because it must be shared by every instance, and because assigning an
offset, storing and publishing must be one atomic step on the shared store.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..core.envelope import decode as decode_envelope
from ..core.envelope import encode as encode_envelope
from ..core.history import Page, Retention
from ..exceptions import BackplaneUnavailable

log = logging.getLogger("wskit.backplane")

MessageHandler = Callable[[str, str], None]

__all__ = ["Backplane", "MessageHandler", "RoomPost", "Sent", "encode_envelope",
           "decode_envelope"]


class RoomPost(NamedTuple):
    """One room post for :meth:`Backplane.send`: stored with the next offset of
    history ``key`` and published (``append``), or only published (``key`` None).
    A tuple: one is made per post, on the hot path."""

    channel: str
    origin: str
    frame_text: str
    key: str | None = None
    retention: Retention | None = None


#: what :meth:`Backplane.send` says of one post: its ``(offset, epoch)`` when it was
#: stored, None when it was published only, or the error that stopped it
Sent = tuple[int, str] | None | BackplaneUnavailable


class Backplane(abc.ABC):
    """A publish/subscribe bus shared by wskit instances."""

    #: the URL this backplane was made from, with any password hidden
    url: str = ""
    #: room channels must carry the room's hash tag (``{ns}:{room:R}``) so that they
    #: live in the slot of the room's history (a Redis Cluster)
    hash_tagged_channels: bool = False

    def __init__(self) -> None:
        self.on_message: MessageHandler | None = None
        self._wanted: set[str] = set()
        self._sync_lock = asyncio.Lock()

    @property
    def channels(self) -> set[str]:
        """The channels this instance wants to hear (a copy)."""
        return set(self._wanted)

    @property
    def healthy(self) -> bool:
        """False while the backend is unreachable (messages then stay local)."""
        return True

    async def wait_healthy(self, timeout: float) -> None:  # noqa: B027 - healthy by default
        """Return once the backend is reachable again; TimeoutError after ``timeout``."""
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; raise :class:`BackplaneUnavailable` with a clear message if impossible."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Cancel listeners and close clients. Idempotent."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: str) -> int:
        """Publish; return how many *instances* heard it. Raise BackplaneUnavailable."""

    @abc.abstractmethod
    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention) -> tuple[int, str]:
        """Atomically: give ``frame_text`` the next offset of history ``key``, store it
        (trimmed to ``retention``) and publish its envelope on ``channel``.

        Returns ``(offset, epoch)``. Raises BackplaneUnavailable.
        """

    @abc.abstractmethod
    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        """History ``key``: entries after offset ``after``, or the ``last`` K, or just
        its position. Raises BackplaneUnavailable."""

    def lane(self, channel: str) -> str:
        """Posts of one lane are sent in order, one batch at a time; lanes run in
        parallel. One lane here: a single server publishes in the order it receives."""
        return ""

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        """Store and publish ``posts`` in order; one :data:`Sent` per post.

        This default makes one call per post; a backend that can pipeline sends the
        whole batch in one round trip (the server batches the posts of one loop
        tick, so a busy room costs one round trip per tick, not one per post).
        """
        results: list[Sent] = []
        for post in posts:
            try:
                if post.key is None:
                    await self.publish(post.channel,
                                       encode_envelope(post.origin, post.frame_text))
                    results.append(None)
                else:
                    assert post.retention is not None
                    results.append(await self.append(post.key, post.channel, post.origin,
                                                     post.frame_text, post.retention))
            except BackplaneUnavailable as exc:
                results.append(exc)
        return results

    # -- presence (see wskit.server.presence): ``key`` is a room's history key ---------

    @abc.abstractmethod
    async def presence_join(self, key: str, user: str, instance: str, ttl: float) -> bool:
        """Add (user, instance) to the room's presence, expiring after ``ttl`` s; True if
        the user had no live entry before (its first connection anywhere)."""

    @abc.abstractmethod
    async def presence_leave(self, key: str, user: str, instance: str) -> bool:
        """Remove (user, instance); True if the user has no live entry left."""

    @abc.abstractmethod
    async def presence_refresh(self, key: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        """Extend this instance's entries, drop expired ones; the users now gone."""

    @abc.abstractmethod
    async def presence_list(self, key: str) -> list[str]:
        """Users with a live entry, sorted."""

    def want(self, channel: str) -> None:
        """Record that ``channel`` is wanted; :meth:`sync` applies it."""
        self._wanted.add(channel)

    def unwant(self, channel: str) -> None:
        """Record that ``channel`` is no longer wanted; :meth:`sync` applies it."""
        self._wanted.discard(channel)

    async def sync(self) -> None:
        """Make the backend's subscriptions equal the wanted set as it is now.

        Never raises for an unreachable backend: the wish is kept, and the
        reconnecting listener subscribes to every wanted channel.
        """
        async with self._sync_lock:
            await self._apply(set(self._wanted))

    async def subscribe(self, channel: str) -> None:
        """``want`` then ``sync``: returns once the backend confirmed (or is down)."""
        self.want(channel)
        await self.sync()

    async def unsubscribe(self, channel: str) -> None:
        self.unwant(channel)
        await self.sync()

    @abc.abstractmethod
    async def _apply(self, wanted: set[str]) -> None:
        """Make the backend's subscriptions equal ``wanted``."""

    def _dispatch(self, channel: str, data: str) -> None:
        handler = self.on_message
        if handler is None:
            return
        try:
            handler(channel, data)
        except Exception:  # a bad message must not kill the listener
            log.exception("backplane message handler failed on channel %s", channel)

    async def __aenter__(self) -> Backplane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

