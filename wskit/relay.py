"""The server's side of the backplane: channel names, subscription intents, envelopes.

:class:`ChatServer` speaks in rooms and users; the backplane speaks in channels
and envelopes. This object translates, so that neither the server nor any
backend holds the other's bookkeeping:

* **names**: room ``R`` is channel ``{ns}:room:R``, user ``U`` is ``{ns}:user:U``;
* **intents**: the server calls :meth:`room_opened`, :meth:`room_emptied`,
  :meth:`user_arrived` and :meth:`user_gone` *synchronously, at the moment the
  hub changes*, so the wanted set always equals the hub's state; applying it
  to the backend (:meth:`settle`, :meth:`settle_soon`) reads that set when it
  runs, so no stale intent can undo a newer one;
* **envelopes**: what goes out names this instance, what comes back from this
  instance is dropped (it was delivered locally when posted), and the rest is
  routed to a room's or a user's local connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

from .backplane import Backplane, decode_envelope, encode_envelope
from .history import Page, Retention

log = logging.getLogger("wskit.relay")

__all__ = ["Relay"]

#: ``route(kind, key, frame, sender)``: kind is "room" or "user", frame the decoded server
#: frame, sender the id of the local connection that posted it (None if posted elsewhere)
Router = Callable[[str, str, dict[str, Any], Optional[str]], None]


class Relay:
    """Joins one :class:`ChatServer` to a :class:`Backplane`."""

    def __init__(self, backplane: Backplane, instance_id: str, namespace: str,
                 route: Router) -> None:
        self.backplane = backplane
        self.instance_id = instance_id
        self._prefix = f"{namespace}:"
        self._route = route
        self._tasks: set[asyncio.Task[None]] = set()
        backplane.on_message = self._on_message

    # -- names ---------------------------------------------------------------

    def room_channel(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    def user_channel(self, user: str) -> str:
        return f"{self._prefix}user:{user}"

    def history_key(self, room: str) -> str:
        """Prefix of a room's history keys; the hash tag keeps them in one cluster slot."""
        return f"{self._prefix}{{room:{room}}}"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        await self.backplane.start()

    async def stop(self) -> None:
        await self.idle()
        await self.backplane.stop()

    async def idle(self) -> None:
        """Wait until no background :meth:`settle_soon` is left.

        ``asyncio.wait`` suspends even on finished tasks (a bare ``gather`` of
        done tasks does not on 3.12+, which made a ``while`` loop here spin).
        """
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # -- intents (synchronous, in hub order) ---------------------------------

    def room_opened(self, room: str) -> None:
        self.backplane.want(self.room_channel(room))

    def room_emptied(self, room: str) -> None:
        self.backplane.unwant(self.room_channel(room))

    def user_arrived(self, user: str) -> None:
        self.backplane.want(self.user_channel(user))

    def user_gone(self, user: str) -> None:
        self.backplane.unwant(self.user_channel(user))

    async def settle(self) -> None:
        """Apply every intent so far; returns once the backend confirmed (or is down)."""
        await self.backplane.sync()

    def settle_soon(self) -> None:
        """:meth:`settle` in the background (from synchronous code: a close)."""
        task = asyncio.get_running_loop().create_task(self.backplane.sync(),
                                                      name="wskit-relay-settle")
        self._tasks.add(task)  # the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)

    # -- publishing ----------------------------------------------------------

    async def publish_room(self, room: str, frame_text: str) -> int:
        """Send a room frame to the other instances; how many instances heard it."""
        return await self.backplane.publish(self.room_channel(room),
                                            encode_envelope(self.instance_id, frame_text))

    async def publish_user(self, user: str, frame_text: str) -> int:
        return await self.backplane.publish(self.user_channel(user),
                                            encode_envelope(self.instance_id, frame_text))

    async def append_room(self, room: str, frame_text: str, retention: Retention,
                          sender: str) -> tuple[int, str]:
        """Store and publish a room post; its ``(offset, epoch)``. Every instance with
        members in the room, this one included, delivers it from the bus, in offset
        order; the envelope's origin names the sending connection (``instance/conn``)
        so that this instance does not echo the post to its sender."""
        return await self.backplane.append(self.history_key(room), self.room_channel(room),
                                           f"{self.instance_id}/{sender}", frame_text,
                                           retention)

    async def read_room(self, room: str, retention: Retention, *, after: Optional[int] = None,
                        last: Optional[int] = None) -> Page:
        return await self.backplane.read(self.history_key(room), retention, after=after,
                                         last=last)

    # -- receiving -----------------------------------------------------------

    def _on_message(self, channel: str, data: str) -> None:
        try:
            origin, frame = decode_envelope(data)
        except (ValueError, RecursionError) as exc:
            log.warning("dropped a malformed envelope on %s: %s", channel, str(exc)[:200])
            return
        instance, _, sender = origin.partition("/")
        mine = instance == self.instance_id
        if mine and "offset" not in frame:
            return  # delivered locally when it was posted (posts with an offset are not)
        if not channel.startswith(self._prefix):
            return
        kind, _, key = channel[len(self._prefix):].partition(":")
        if kind in ("room", "user"):
            self._route(kind, key, frame, sender if mine else None)


