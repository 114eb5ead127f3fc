"""``wskit.Publisher(url)``: the server API from a process that serves no sockets.

A backend job, a cron script or a worker holds only the backplane URL (the
``--redis`` of the servers) and their namespace::

    async with wskit.Publisher("redis://127.0.0.1:6379/0") as pub:
        offset = await pub.publish("lobby", "build 42 is green", user="ci")

A post goes the way a client's goes: stored with the room's next offset (the same
atomic script) and published on the room's channel, so every instance delivers it
in offset order and it is in the history. The publisher subscribes to nothing.
Its history retention must be the servers' (``history_size``, ``history_ttl``;
``history_size=0`` when theirs is off), because a post's store trims the room's
history to the retention it is given.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from .backplane import Backplane, Sent, from_url
from .core.history import Retention
from .core.protocol import CloseCode
from .exceptions import ConfigError
from .security.signing import Signer
from .server.api import (
    check_close,
    check_post,
    disconnect_frame,
    history_answer,
    message_frame,
    published,
)
from .server.relay import Inbound, Relay
from .server.settings import Settings

__all__ = ["Publisher"]

_DEFAULTS = Settings()


class Publisher:
    """Publish to rooms, disconnect users, read presence and history, through the
    backplane alone (see the module docstring)."""

    def __init__(self, url: str | Backplane, *, namespace: str = _DEFAULTS.namespace,
                 history_size: int = _DEFAULTS.history_size,
                 history_ttl: float = _DEFAULTS.history_ttl, name: str = "publisher",
                 max_message_size: int = _DEFAULTS.max_message_size,
                 backplane_key: str | None = None) -> None:
        bp = url if isinstance(url, Backplane) else from_url(url)
        if bp is None:
            raise ConfigError("a Publisher needs a backplane URL (redis://, fakeredis://, ...)")
        self.instance_id = f"{name}-{uuid.uuid4().hex[:6]}"
        # the servers' backplane_key, if they have one: their instances drop what it
        # does not sign
        self.relay = Relay(bp, self.instance_id, namespace, _ignore, Signer(backplane_key))
        self.retention = Retention(history_size, history_ttl) if history_size else None
        self.max_message_size = max_message_size
        self._ids = 0

    @property
    def backplane(self) -> Backplane:
        return self.relay.backplane

    async def start(self) -> Publisher:
        await self.relay.start()
        return self

    async def stop(self) -> None:
        await self.relay.stop()

    async def __aenter__(self) -> Publisher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, room: str, content: str, *, user: str = "server") -> int | None:
        """Post ``content`` to ``room`` as ``user``; its offset (None with history off).
        Raises ValueError for bad input, BackplaneUnavailable when the bus is down.
        Text only: a publisher cannot know whether the servers accept object content
        (``content_type``); ``ChatServer.publish`` on such a server can."""
        check_post(room, content, user, self.max_message_size)
        self._ids += 1
        text = message_frame(f"{self.instance_id}-{self._ids}", room, user, content, time.time())
        done: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()

        def sent(result: Sent) -> None:
            if not done.done():
                done.set_result(result)

        self.relay.post_room(room, text, "", self.retention, sent)
        return published(await done)

    async def disconnect(self, user: str, code: int = CloseCode.POLICY_VIOLATION,
                         reason: str = "disconnected by the server") -> int:
        """Close ``user``'s connections on every instance; how many instances heard it."""
        check_close(code, reason)
        return await self.relay.publish_user(user, disconnect_frame(int(code), reason))

    async def presence(self, room: str) -> list[str]:
        """Who is in ``room`` on any instance, sorted."""
        return await self.relay.presence_list(room)

    async def history(self, room: str, limit: int | None = None) -> dict[str, Any]:
        """The last ``limit`` retained messages of ``room``, oldest first."""
        if self.retention is None:
            raise ConfigError("this Publisher was made with history_size=0")
        page = await self.relay.read_room(room, self.retention,
                                          last=limit or self.retention.size)
        return history_answer(room, page)


def _ignore(event: Inbound) -> None:
    """A publisher subscribes to nothing, so nothing is routed."""
