"""Drive a :class:`~wskit.server.chat.ChatServer` without sockets, deterministically.

Two doubles, each a real implementation of an interface the server uses, so
the server code under test is exactly the code that runs in production:

* :class:`MemoryTransport`: a :class:`~wskit.server.connection.Transport` whose frames
  in and out are Python lists and queues. :class:`Peer` wraps one and runs
  :meth:`ChatServer.serve_connection` on it, as an adapter would.
* :class:`GatedBackplane`: a ``memory://`` backplane whose calls (``apply`` a
  subscription change, ``publish``) can be *held* at a gate and released
  later, and that can lose its connection (:meth:`~GatedBackplane.drop`) and
  get it back (:meth:`~GatedBackplane.restore`). A race becomes a test: hold a
  call, interleave the other event, release, look.

Used by wskit's own test suite, and by lessons that show a race step by step.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..backplane import MemoryBackplane, RoomPost, Sent
from ..core.history import Page, Retention
from ..exceptions import BackplaneUnavailable
from ..server.chat import ChatServer

__all__ = ["MemoryTransport", "Peer", "Gate", "GatedBackplane"]

Incoming = str | bytes | None


class MemoryTransport:
    """A WebSocket as two queues: what the client sent, what the server sent."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Incoming] = asyncio.Queue()
        self.sent: list[str] = []
        self._new = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.aborted = False
        self.closed = asyncio.Event()
        #: while cleared, send_text blocks: a client that stopped reading
        self.reading = asyncio.Event()
        self.reading.set()

    async def receive(self) -> Incoming:
        if self.closed.is_set():
            return None
        if not self.incoming.empty():
            # a frame already buffered is returned without suspending, as aiohttp's
            # and Starlette's receive() do: a burst is read in one loop tick
            return self.incoming.get_nowait()
        getter = asyncio.ensure_future(self.incoming.get())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (getter, closed):
                fut.cancel()
            await asyncio.wait({getter, closed})
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    async def send_text(self, text: str) -> None:
        await self.reading.wait()
        if self.closed.is_set():
            raise ConnectionResetError("transport closed")
        self.sent.append(text)
        self._new.set()

    async def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()
            self._new.set()

    def abort(self) -> None:
        self.aborted = True
        self.closed.set()
        self._new.set()

    async def wait_sent(self, count: int, timeout: float = 2.0) -> None:
        """Wait until ``count`` frames in all have been sent (or the transport closed)."""
        async def _wait() -> None:
            while len(self.sent) < count and not self.closed.is_set():
                self._new.clear()
                await self._new.wait()
        await asyncio.wait_for(_wait(), timeout)


class Peer:
    """One client of a :class:`ChatServer`, over a :class:`MemoryTransport`."""

    def __init__(self, server: ChatServer, user: str, token: str | None = None) -> None:
        self.server = server
        self.user = user
        #: the token to connect with; None: one issued for ``user`` by the server's secret
        self.token = token
        self.transport = MemoryTransport()
        self._read = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Peer:
        """Queue ``serve_connection`` as a task, as an adapter's handler would be."""
        token = self.token or (None if self.user == "" else _token(self.server, self.user))
        self.task = asyncio.get_running_loop().create_task(
            self.server.serve_connection(self.transport, token), name=f"peer-{self.user}")
        return self

    async def connect(self) -> Peer:
        """Run ``serve_connection`` and wait for the welcome frame."""
        if self.task is None:
            self.start()
        welcome = await self.recv()
        if welcome.get("type") != "welcome":
            raise AssertionError(f"expected welcome, got {welcome}")
        return self

    @property
    def conn(self) -> Any:
        """The server's :class:`~wskit.server.connection.Connection` for this peer."""
        for conn in self.server.connections:
            if conn.transport is self.transport:
                return conn
        raise LookupError(f"{self.user} has no connection on the server")

    def send(self, frame: dict[str, Any] | str | bytes | None) -> None:
        """Queue a frame for the server's reader (a dict as JSON; None: the client left)."""
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        self.transport.incoming.put_nowait(frame)

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        """The next frame the server sent to this peer, decoded."""
        await self.transport.wait_sent(self._read + 1, timeout)
        if self._read >= len(self.transport.sent):
            raise ConnectionError(f"closed with {self.transport.close_code}")
        text = self.transport.sent[self._read]
        self._read += 1
        frame: dict[str, Any] = json.loads(text)
        return frame

    async def request(self, frame: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """Send a frame, then return the next frame that is not a broadcast."""
        self.send(frame)
        while True:
            reply = await self.recv(timeout)
            if reply.get("type") not in ("message", "direct", "ping"):
                return reply

    def unread(self) -> list[dict[str, Any]]:
        """Every frame sent and not yet taken by :meth:`recv`."""
        frames = [json.loads(t) for t in self.transport.sent[self._read:]]
        self._read = len(self.transport.sent)
        return frames

    async def leave(self) -> None:
        """The client closes: the reader sees the end of the stream."""
        self.send(None)
        await self.finished()

    async def finished(self, timeout: float = 5.0) -> None:
        if self.task is not None:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)


def _token(server: ChatServer, user: str) -> str:
    from ..security.tokens import issue_token

    return issue_token(user, server.secret)


class Gate:
    """Holds every call that reaches it until :meth:`release`."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._arrived = asyncio.Event()
        self.held = 0

    async def passage(self) -> None:
        self.held += 1
        self._arrived.set()
        await self._open.wait()

    async def arrived(self, timeout: float = 2.0) -> None:
        """Wait until a call is waiting at this gate."""
        await asyncio.wait_for(self._arrived.wait(), timeout)

    def release(self) -> None:
        self._open.set()


class GatedBackplane(MemoryBackplane):
    """A ``memory://`` backplane whose calls can be held, dropped and restored.

    Backplanes made with the same ``bus`` name hear each other; by default each
    gets a bus of its own.
    """

    def __init__(self, bus: str | None = None) -> None:
        super().__init__(bus or f"gated-{uuid.uuid4().hex[:12]}")
        self.url = f"gated://{self.name}"
        self.up = True
        self._gates: dict[str, Gate] = {}
        #: the size of every batch the server sent (:meth:`Backplane.send`), in order
        self.batches: list[int] = []
        self._drops = 0

    @property
    def subscribed(self) -> set[str]:
        """What the "server" has actually applied (compare with ``channels``)."""
        return set(self._subscribed)

    # -- control -------------------------------------------------------------

    def hold(self, op: str) -> Gate:
        """Hold every later ``op`` call ("apply", "publish" (and append) or "read")
        until the gate is released."""
        if op not in ("apply", "publish", "read"):
            raise ValueError(f"unknown operation {op!r}")
        gate = self._gates.get(op)
        if gate is None:  # one gate per operation: a second hold is the same gate
            gate = self._gates[op] = Gate()
        return gate

    def open(self, op: str) -> None:
        """Release and remove the gate of ``op``."""
        gate = self._gates.pop(op, None)
        if gate is not None:
            gate.release()

    def drop(self) -> None:
        """The connection is lost: every subscription with it (as with Redis)."""
        self.up = False
        self._drops += 1  # a call still held at a gate died with the connection
        self._set_subscribed(set())
        self.subscriptions.reset(set())

    async def restore(self) -> None:
        """Reconnected: resubscribe to everything wanted, as the Redis listener does."""
        self.up = True
        await self.subscriptions.settle()
        self._resubscribed()

    async def _pass(self, op: str) -> None:
        """Wait at ``op``'s gate, if it is held."""
        gate = self._gates.get(op)
        if gate is not None:
            await gate.passage()

    # -- Backplane -----------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self.up

    async def publish(self, channel: str, data: str) -> int:
        await self._pass("publish")
        if not self.up:
            raise BackplaneUnavailable("gated backplane dropped")
        return await super().publish(channel, data)

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        self.batches.append(len(posts))
        return await super().send(posts)

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        await self._pass("publish")
        if not self.up:
            raise BackplaneUnavailable("gated backplane dropped")
        return await super().append(key, channel, origin, frame_text, retention, once, sig)

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        await self._pass("read")
        if not self.up:
            raise BackplaneUnavailable("gated backplane dropped")
        return await super().read(key, retention, after=after, last=last)

    async def _apply(self, add: set[str], remove: set[str]) -> bool:
        drops = self._drops
        await self._pass("apply")
        if not self.up or drops != self._drops:
            return False
        return await super()._apply(add, remove)
