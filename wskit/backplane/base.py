"""The backplane interface: a small :class:`Broker`, and a :class:`PresenceStore` apart.

A backplane joins several wskit instances into one chat system. After
centrifuge, which keeps its ``Broker`` (publish/subscribe with history) apart from
its ``PresenceManager``, it is two interfaces:

* :class:`Broker`: ``start``/``stop``; ``publish``; subscriptions (``subscribe``,
  ``unsubscribe``, and the intent set behind them); ``append`` (the next offset,
  stored and published in one atomic step) and ``read`` of a room's history;
  ``healthy``. ``send`` (a batch of appends in one round trip) and ``lane``
  (which posts are batched together) have defaults.
* :class:`PresenceStore`: four calls, who is in a room on any instance. Each
  broker offers one as :attr:`Broker.presence` (Redis keeps presence beside the
  history it shares a hash slot with), but nothing else of the broker uses it.

``Backplane`` is the broker's other name, the one the rest of wskit uses.

Subscriptions are *intents* (:attr:`Broker.subscriptions`, a
:class:`~wskit.backplane.reconcile.Reconciler`): ``want`` and ``unwant`` change the
set of wanted channels synchronously, in the order the hub changed, and
``settle`` has one worker make the backend match whatever is wanted *when it
runs*; it returns once the backend confirmed, so a client that got ``joined``
receives every later post. A backend only implements ``_apply(add, remove)``.

Every message is an envelope (:mod:`wskit.core.envelope`, docs/protocol.md).
``origin`` lets each instance drop its own publications: it has delivered them
locally already, so nothing is delivered twice. A room post with history on
carries its ``offset``; such envelopes are delivered by *every* subscribed
instance, the publisher's included, in the order the backend published them,
which is offset order (see :meth:`Broker.append`).

History (:meth:`Broker.append`, :meth:`Broker.read`) lives in the broker because
it must be shared by every instance, and because assigning an offset, storing
and publishing must be one atomic step on the shared store.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from ..core.envelope import decode as decode_envelope
from ..core.envelope import encode as encode_envelope
from ..core.history import Page, Repeat, Retention
from ..exceptions import BackplaneUnavailable
from .reconcile import Reconciler

log = logging.getLogger("wskit.backplane")

MessageHandler = Callable[[str, str], None]

__all__ = ["Broker", "Backplane", "PresenceStore", "MessageHandler", "RoomPost", "Sent",
           "encode_envelope", "decode_envelope"]


class RoomPost(NamedTuple):
    """One room post for :meth:`Backplane.send`: stored with the next offset of
    history ``key`` and published (``append``), or only published (``key`` None).
    A tuple: one is made per post, on the hot path."""

    channel: str
    origin: str
    frame_text: str
    key: str | None = None
    retention: Retention | None = None
    #: the post's :func:`~wskit.core.history.once_token` when it carries an id
    once: str | None = None
    #: its writer's signature of ``frame_text`` on ``channel``, stored and published
    #: with it (:mod:`wskit.security.signing`); '' for none
    sig: str = ""


#: what :meth:`Backplane.send` says of one post: its ``(offset, epoch)`` when it was
#: stored, a :class:`~wskit.core.history.Repeat` when its id had been stored before
#: (nothing stored or published), None when it was published only, or the error
#: that stopped it
Sent = tuple[int, str] | Repeat | None | BackplaneUnavailable


class PresenceStore(Protocol):
    """Who is in a room on any instance: one entry per (user, instance) with an
    expiry (see :mod:`wskit.server.presence`). ``key`` names the room (the broker's
    is its history key; the server's Presence passes room names)."""

    async def presence_join(self, key: str, user: str, instance: str, ttl: float) -> bool:
        """Add (user, instance), expiring after ``ttl`` s; True if the user had no
        live entry before (its first connection anywhere)."""

    async def presence_leave(self, key: str, user: str, instance: str) -> bool:
        """Remove (user, instance); True if the user has no live entry left."""

    async def presence_refresh(self, key: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        """Extend this instance's entries, drop expired ones; the users now gone."""

    async def presence_list(self, key: str) -> list[str]:
        """Users with a live entry, sorted."""


class Broker(abc.ABC):
    """Publish/subscribe with an atomic append and a history read, shared by
    wskit instances."""

    #: the URL this backplane was made from, with any password hidden
    url: str = ""
    #: room channels must carry the room's hash tag (``{ns}:{room:R}``) so that they
    #: live in the slot of the room's history (a Redis Cluster)
    hash_tagged_channels: bool = False

    def __init__(self) -> None:
        self.on_message: MessageHandler | None = None
        #: called once the backend has every wanted channel again after losing them
        #: (a dropped listener connection): whatever was published in between was
        #: not heard here (the server then repairs its rooms: wskit.server.positions)
        self.on_resubscribed: Callable[[], None] | None = None
        #: the channels wanted (the relay records intents here, in hub order) and
        #: those the backend confirmed; one worker applies the difference
        self.subscriptions: Reconciler[str] = Reconciler(
            self._changes, name=f"wskit-subscriptions-{id(self):x}", eager=False)

    def _resubscribed(self) -> None:
        if self.on_resubscribed is not None:
            try:
                self.on_resubscribed()
            except Exception:
                log.exception("on_resubscribed failed")

    @property
    def channels(self) -> set[str]:
        """The channels this instance wants to hear (a copy)."""
        return set(self.subscriptions.wanted)

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
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        """Atomically: give ``frame_text`` the next offset of history ``key``, store it
        (trimmed to ``retention``) and publish its envelope on ``channel``; unless
        ``once`` was stored before and is still remembered (then nothing). ``sig`` is
        stored with the entry and written into the envelope.

        Returns ``(offset, epoch)``, or a :class:`~wskit.core.history.Repeat` with
        the first post's offset. Raises BackplaneUnavailable.
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
                    await self.publish(post.channel, encode_envelope(
                        post.origin, post.frame_text, sig=post.sig))
                    results.append(None)
                else:
                    assert post.retention is not None
                    results.append(await self.append(post.key, post.channel, post.origin,
                                                     post.frame_text, post.retention,
                                                     post.once, post.sig))
            except BackplaneUnavailable as exc:
                results.append(exc)
        return results

    @property
    @abc.abstractmethod
    def presence(self) -> PresenceStore:
        """This backend's presence store (keys: rooms' history keys)."""

    async def subscribe(self, channel: str) -> None:
        """Want ``channel`` and :meth:`~Reconciler.settle`: returns once the backend
        confirmed (or is down: the reconnecting listener subscribes it then)."""
        self.subscriptions.want(channel)
        await self.subscriptions.settle()

    async def unsubscribe(self, channel: str) -> None:
        self.subscriptions.unwant(channel)
        await self.subscriptions.settle()

    async def _changes(self, changes: list[tuple[str, bool]]) -> int:
        """The subscriptions' ``apply`` (see :class:`Reconciler`): all or nothing."""
        add = {ch for ch, on in changes if on}
        ok = await self._apply(add, {ch for ch, on in changes if not on})
        return len(changes) if ok else 0

    @abc.abstractmethod
    async def _apply(self, add: set[str], remove: set[str]) -> bool:
        """Subscribe ``add`` and unsubscribe ``remove``, confirmed; False when the
        backend cannot now (the channels stay pending)."""

    def _dispatch(self, channel: str, data: str) -> None:
        handler = self.on_message
        if handler is None:
            return
        try:
            handler(channel, data)
        except Exception:  # a bad message must not kill the listener
            log.exception("backplane message handler failed on channel %s", channel)

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


#: the name the rest of wskit uses for a broker
Backplane = Broker
