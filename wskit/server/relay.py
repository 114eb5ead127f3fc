"""The server's side of the backplane: channel names, subscription intents, envelopes.

:class:`ChatServer` speaks in rooms and users; the backplane speaks in channels
and envelopes. This object translates, so that neither the server nor any
backend holds the other's bookkeeping:

* **names**: room ``R`` is channel ``{ns}:room:R`` (``{ns}:{room:R}`` on a Redis
  Cluster, in the slot of the room's history), user ``U`` is ``{ns}:user:U``;
* **intents**: the server calls :meth:`room_opened`, :meth:`room_emptied`,
  :meth:`user_arrived` and :meth:`user_gone` *synchronously, at the moment the
  hub changes*; they become wants of the broker's channel set
  (:class:`~wskit.backplane.reconcile.Reconciler`), so the wanted set always
  equals the hub's state, and its one worker (:meth:`settle`, :meth:`settle_soon`)
  applies that set as it is when it runs, so no stale intent can undo a newer one;
* **envelopes**: what goes out names this instance and is signed
  (:mod:`wskit.security.signing`); what comes back from this instance is dropped
  (it was delivered locally when posted) unless it carries an offset; an envelope
  that claims this instance's origin without its signature, or (with a shared
  key) any envelope or history entry without the key's, is dropped; the rest is
  routed to a room's or a user's local connections;
* **batches**: room posts queued during one loop tick go to the backend in one
  :meth:`Backplane.send` (one pipelined round trip on Redis), one batch at a time,
  so a busy room costs a round trip per tick instead of one per post, and posts
  reach the store in the order they were queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from ..backplane import Backplane, RoomPost, Sent
from ..core import envelope
from ..core.history import Page, Retention
from ..core.protocol import encode
from ..exceptions import BackplaneUnavailable
from ..security.signing import Signer

log = logging.getLogger("wskit.relay")

__all__ = ["Relay", "Inbound", "Router"]

Kind = Literal["room", "presence", "user"]


class Inbound(NamedTuple):
    """One event from the bus, for the server to deliver to its local connections.

    The relay has read the envelope (split it, or decoded it in full), so the
    server never parses JSON again to learn what an event is or whose it is.
    Immutable and typed; a tuple rather than a frozen dataclass because one is made
    per message received, on the hot path (a frozen dataclass's ``__init__`` costs
    about five times as much).
    """

    #: ``"room"``: a room post; ``"presence"``: a room's join/leave event;
    #: ``"user"``: a direct message
    kind: Kind
    #: the room (``room``, ``presence``) or the user (``user``) it is for
    target: str
    #: the server frame to deliver, encoded (with its offset and epoch, if any)
    text: str
    #: its room offset; None without history
    offset: int | None = None
    #: the local connection that posted it (our own post back from the bus), else None
    sender: str | None = None
    #: a presence event: the user it is about, who is not told
    whose: str | None = None
    #: the epoch of its offset; None without history
    epoch: str | None = None


#: what the relay hands each :class:`Inbound` to (``ChatServer._route``)
Router = Callable[[Inbound], None]

class Relay:
    """Joins one :class:`ChatServer` to a :class:`Backplane`."""

    def __init__(self, backplane: Backplane, instance_id: str, namespace: str,
                 route: Router, signer: Signer | None = None) -> None:
        self.backplane = backplane
        self.instance_id = instance_id
        #: signs what this instance writes; proves what it (or, with a shared key,
        #: any key holder) wrote
        self.signer = signer or Signer()
        #: envelopes and history entries dropped as unproven or malformed
        self.refused = 0
        self._prefix = f"{namespace}:"
        self._route = route
        self._tasks: set[asyncio.Task[None]] = set()
        #: posts waiting for the next batch of their lane, each with what to call when
        #: it is sent; a lane's sender task runs while its queue exists
        self._lanes: dict[str, list[tuple[RoomPost, Callable[[Sent], None]]]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        backplane.on_message = self._on_message

    # -- names ---------------------------------------------------------------

    def room_channel(self, room: str) -> str:
        if self.backplane.hash_tagged_channels:  # a cluster: the slot of its history
            return f"{self._prefix}{{room:{room}}}"
        return f"{self._prefix}room:{room}"

    def user_channel(self, user: str) -> str:
        return f"{self._prefix}user:{user}"

    def history_key(self, room: str) -> str:
        """Prefix of a room's history keys; the hash tag keeps them in one cluster slot."""
        return f"{self._prefix}{{room:{room}}}"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.backplane.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (at most ``timeout`` s: a stuck backend fails the
        rest, each post's callback told so), then stop the backend."""
        senders = set(self._senders.values())
        if senders:
            _, stuck = await asyncio.wait(senders, timeout=timeout)
            for task in stuck:
                task.cancel()
        await self.idle()
        await self.backplane.stop()

    async def idle(self) -> None:
        """Wait until no background :meth:`settle_soon` or batch is left.

        ``asyncio.wait`` suspends even on finished tasks (a bare ``gather`` of
        done tasks does not on 3.12+, which made a ``while`` loop here spin).
        """
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.backplane.subscriptions.idle()

    # -- intents (synchronous, in hub order) ---------------------------------

    # (rooms and users in, the broker's channel intents out: its ``subscriptions``)

    def room_opened(self, room: str) -> None:
        self.backplane.subscriptions.want(self.room_channel(room))

    def room_emptied(self, room: str) -> None:
        self.backplane.subscriptions.unwant(self.room_channel(room))

    def user_arrived(self, user: str) -> None:
        self.backplane.subscriptions.want(self.user_channel(user))

    def user_gone(self, user: str) -> None:
        self.backplane.subscriptions.unwant(self.user_channel(user))

    async def settle(self) -> None:
        """Apply every intent so far; returns once the backend confirmed (or is down)."""
        await self.backplane.subscriptions.settle()

    def settle_soon(self) -> None:
        """:meth:`settle` in the background (from synchronous code: a close);
        :meth:`idle` waits for it."""
        self.backplane.subscriptions.retry()

    def _background(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)  # the loop holds tasks only weakly; idle() waits for them
        task.add_done_callback(self._tasks.discard)
        return task

    # -- publishing ----------------------------------------------------------

    def post_room(self, room: str, frame_text: str, sender: str,
                  retention: Retention | None,
                  done: Callable[[Sent], None], once: str | None = None) -> None:
        """Queue a room post for the next batch; ``done`` is called with its
        :data:`Sent`, posts in queue order (also when the relay stops first).

        With ``retention`` the post is stored and gets an offset (history on): every
        instance with members in the room, this one included, delivers it from the
        bus, in offset order, and its origin names the sending connection
        (``instance/conn``) so this instance does not echo it to its sender. Without,
        it is only published (the caller delivered it here already). ``once`` (a
        :func:`~wskit.core.history.once_token`) makes a repeat a
        :class:`~wskit.core.history.Repeat`: stored and published nothing.
        """
        channel = self.room_channel(room)
        sig = self.signer.sign(channel, frame_text)
        if retention is None:
            post = RoomPost(channel, self.instance_id, frame_text, sig=sig)
        else:
            post = RoomPost(channel, f"{self.instance_id}/{sender}", frame_text,
                            self.history_key(room), retention, once, sig)
        # A single Redis publishes in the order it receives: one lane keeps every room
        # in order and batches them all. A cluster has a lane per shard, so a failed
        # shard stalls only its own rooms.
        lane = self.backplane.lane(post.channel)
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = []
            # runs after the readers already woken in this tick: their posts join the batch
            self._senders[lane] = self._background(self._send_batches(lane), "wskit-relay-send")
        queue.append((post, done))

    async def _send_batches(self, lane: str) -> None:
        try:
            while self._lanes[lane]:
                batch, self._lanes[lane] = self._lanes[lane], []
                try:
                    results = await self.backplane.send([post for post, _ in batch])
                except asyncio.CancelledError:
                    stopped = BackplaneUnavailable("the server stopped before sending")
                    self._finish(batch + self._lanes[lane], [stopped] * (
                        len(batch) + len(self._lanes[lane])))
                    self._lanes[lane] = []
                    raise
                except Exception as exc:  # a backend bug: fail these posts, keep the relay
                    log.exception("sending %d post(s) failed", len(batch))
                    results = [BackplaneUnavailable(f"send failed: {exc!r}")] * len(batch)
                self._finish(batch, results)
        finally:
            del self._lanes[lane], self._senders[lane]

    @staticmethod
    def _finish(batch: list[tuple[RoomPost, Callable[[Sent], None]]],
                results: list[Sent]) -> None:
        for (_, done), result in zip(batch, results):
            try:
                done(result)
            except Exception:
                log.exception("a post's completion failed")

    async def publish_user(self, user: str, frame_text: str) -> int:
        channel = self.user_channel(user)
        return await self.backplane.publish(channel, envelope.encode(
            self.instance_id, frame_text, sig=self.signer.sign(channel, frame_text)))

    async def read_room(self, room: str, retention: Retention, *, after: int | None = None,
                        last: int | None = None) -> Page:
        """The room's history, its entries checked as the bus's envelopes are: one
        signed by this relay's key is trusted; with a shared key nothing else is;
        without one, an entry must be a well-formed frame (whoever can write Redis
        can add entries). A refused entry is left out: clients see it as lost."""
        page = await self.backplane.read(self.history_key(room), retention, after=after,
                                         last=last)
        if page.entries:
            channel, signer = self.room_channel(room), self.signer
            kept = [e for e in page.entries if signer.proves(channel, e.text, e.sig or None)
                    or (not signer.shared and envelope.is_frame(e.text))]
            if len(kept) < len(page.entries):
                self.refused += len(page.entries) - len(kept)
                log.warning("left %d unproven or malformed history entr%s of room %r out",
                            len(page.entries) - len(kept),
                            "y" if len(page.entries) - len(kept) == 1 else "ies", room)
                page.entries = kept
        return page

    def proves(self, channel: str, data: str) -> bool:
        """Whether envelope ``data`` on ``channel`` carries this relay's signature."""
        head = envelope.peek(data)
        return head is not None and self.signer.proves(channel, head.frame_text, head.sig)

    # -- presence (a PresenceStore: rooms in, history keys to the broker's store) --

    async def presence_join(self, room: str, user: str, instance: str, ttl: float) -> bool:
        return await self.backplane.presence.presence_join(self.history_key(room), user, instance, ttl)

    async def presence_leave(self, room: str, user: str, instance: str) -> bool:
        return await self.backplane.presence.presence_leave(self.history_key(room), user, instance)

    async def presence_refresh(self, room: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        return await self.backplane.presence.presence_refresh(self.history_key(room), users,
                                                              instance, ttl)

    async def presence_list(self, room: str) -> list[str]:
        return await self.backplane.presence.presence_list(self.history_key(room))

    # -- receiving -----------------------------------------------------------

    def _on_message(self, channel: str, data: str) -> None:
        """One envelope from the bus, as an :class:`Inbound` for the server (or dropped)."""
        if not channel.startswith(self._prefix):
            return
        name = channel[len(self._prefix):]
        kind: Kind
        if name.startswith("{room:") and name.endswith("}"):
            kind, target = "room", name[6:-1]
        else:
            prefix, _, target = name.partition(":")
            if prefix == "room":
                kind = "room"
            elif prefix == "user":
                kind = "user"
            else:
                return
        whose: str | None = None
        head = envelope.peek(data)
        if head is not None and self.signer.proves(channel, head.frame_text, head.sig):
            # written by this instance (or, with a shared key, by a key holder): trusted
            # as it is, spliced without parsing
            instance, _, sender = head.origin.partition("/")
            mine = instance == self.instance_id
            if head.offset is not None and head.epoch is not None:
                self._route(Inbound(kind, target,
                                    envelope.with_offset(head.frame_text, head.offset, head.epoch),
                                    head.offset, sender if mine else None, None, head.epoch))
                return
            if mine:
                return  # delivered locally when it was posted (posts with an offset are not)
        elif self.signer.shared:
            self._refuse(channel, "not signed with the backplane key")
            return
        # another instance's (unprovable without a shared key), a key holder's without
        # an offset (a presence event is told by its frame), or a forgery: parsed and
        # checked in full before any client sees it
        try:
            origin, frame = envelope.decode(data)
        except (ValueError, RecursionError) as exc:
            self._refuse(channel, f"malformed: {str(exc)[:200]}")
            return
        instance = origin.partition("/")[0]
        if instance == self.instance_id:
            # our id is public (welcome, /healthz): anyone who can PUBLISH can write it
            self._refuse(channel, "with this instance's origin but not its signature")
            return
        offset = frame.get("offset")
        epoch = frame.get("epoch")
        if type(offset) is not int:
            offset = epoch = None
        if kind == "room" and offset is None and frame["type"] == "presence":
            kind = "presence"  # about a user, who is not told (its own tabs know)
            user = frame.get("userId")
            whose = user if isinstance(user, str) else None
        self._route(Inbound(kind, target, encode(frame), offset, None, whose, epoch))

    def _refuse(self, channel: str, why: str) -> None:
        self.refused += 1
        log.warning("dropped an envelope on %s: %s", channel, why)
