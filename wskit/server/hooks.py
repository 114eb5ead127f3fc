"""Lifecycle hooks: ``@server.on_connect``, ``on_join``, ``on_post``, ``on_leave``,
``on_disconnect``.

They let an application act on the built-in frames without forking the server: greet
a user, keep a room to its invitees, filter or rewrite a post, clear a typing
indicator when someone leaves. One hook of each kind per server (a second replaces the
first: compose in Python if you need several).

When each runs, and what it may do:

===============  ==========================================  ===========================
hook             runs                                        may refuse (ProtocolError)
===============  ==========================================  ===========================
on_connect(ctx)  after the token is checked, before welcome  yes: close 4003 + message
on_join(ctx, r)  after authorization, before the join        yes: error frame, with ref
on_post(ctx, r,  after authorization, before the post        yes: error frame, with ref;
content)                                                     a str returned replaces it
on_leave(ctx, r) after the leave, or the close, left ``r``   no (it already happened)
on_disconnect    after the connection closed                 no
===============  ==========================================  ===========================

The first three run in the connection's own read loop, so a frame waits for its hook
and frames stay in order; their exceptions other than ProtocolError are bugs and
close that connection with 1011, as a bug in a built-in handler does. The last two
run in tasks of their own (a close happens in synchronous code, and must not wait on
the application); their exceptions are logged, and :meth:`ChatServer.settled` and
``stop()`` wait for them. Hooks see client frames only: ``server.publish(...)`` from
code is the application's own doing and passes no hook.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import protocol
from ..exceptions import ConfigError, ProtocolError
from .connection import Connection
from .frames import FrameContext, outgoing

if TYPE_CHECKING:
    from .chat import ChatServer

__all__ = ["HookContext", "Hooks", "HOOKS"]

log = logging.getLogger("wskit.server")

#: the hook names, in the order a connection meets them
HOOKS = ("on_connect", "on_join", "on_post", "on_leave", "on_disconnect")

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


class HookContext(FrameContext):
    """A hook's view of the connection: ``ctx.user``, ``ctx.claims``, ``ctx.send(frame)``
    to this connection, ``publish(room, frame)`` and ``send_to(user, frame)``."""

    __slots__ = ("claims", "held")

    def __init__(self, server: ChatServer, conn: Connection, claims: dict[str, Any]) -> None:
        super().__init__(server, conn, "", None)
        #: the token's claims (``sub``, ``rooms``, ``exp``, ...)
        self.claims = claims
        #: frames sent by on_connect, held until after ``welcome`` (always the first frame)
        self.held: list[str] | None = None

    async def publish(self, room: str, frame: dict[str, Any]) -> None:
        """``frame`` to the room's members but this connection, on every instance.
        Unlike a handler's, a hook's publish needs no membership: the hook is the
        application's code, and ``on_leave`` runs after the user left."""
        self._publish(room, frame)

    def send(self, frame: dict[str, Any]) -> None:
        """A custom frame (``prefix.name``) to this connection only; any number of them."""
        text = protocol.encode(outgoing(frame))
        if self.held is not None:
            self.held.append(text)
        else:
            self.conn.deliver(text)


class Hooks:
    """One server's lifecycle hooks, and the tasks running the after-the-fact ones."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        self.on_connect: Callable[..., Awaitable[Any]] | None = None
        self.on_join: Callable[..., Awaitable[Any]] | None = None
        self.on_post: Callable[..., Awaitable[Any]] | None = None
        self.on_leave: Callable[..., Awaitable[Any]] | None = None
        self.on_disconnect: Callable[..., Awaitable[Any]] | None = None
        self._claims: dict[str, dict[str, Any]] = {}  # connection id -> its token's claims
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, name: str, hook: H) -> H:
        if name not in HOOKS:
            raise ConfigError(f"no hook {name!r}; hooks: {', '.join(HOOKS)}")
        is_async: bool = inspect.iscoroutinefunction(hook)  # (a bool: no narrowing of H)
        if not is_async:
            raise ConfigError(f"{name} takes an async function (async def), not {hook!r}")
        setattr(self, name, hook)
        return hook

    def _ctx(self, conn: Connection) -> HookContext:
        return HookContext(self._server, conn, self._claims.get(conn.id, {}))

    # -- before: may refuse ------------------------------------------------------

    async def connecting(self, conn: Connection,
                         claims: dict[str, Any]) -> tuple[str | None, list[str]]:
        """Run ``on_connect``: (the refusal's message or None, the frames it sent, to
        follow ``welcome``)."""
        self._claims[conn.id] = claims
        if self.on_connect is None:
            return None, []
        ctx = self._ctx(conn)
        ctx.held = []
        try:
            await self.on_connect(ctx)
        except ProtocolError as exc:
            del self._claims[conn.id]  # never connected: no on_disconnect
            return exc.message or exc.code, []
        held, ctx.held = ctx.held, None  # a ctx kept for later sends at once
        return None, held

    async def joining(self, conn: Connection, req: protocol.Join) -> bool:
        """Run ``on_join``; False when it refused (its error frame is sent)."""
        if self.on_join is None:
            return True
        try:
            await self.on_join(self._ctx(conn), req.room)
        except ProtocolError as exc:
            conn.deliver(protocol.error_frame(exc.code, exc.message, req.ref))
            return False
        return True

    async def posting(self, conn: Connection, req: protocol.Post) -> protocol.Post | None:
        """Run ``on_post``: the post to make (its content maybe replaced), or None when
        refused (its error frame is sent)."""
        if self.on_post is None:
            return req
        try:
            content = await self.on_post(self._ctx(conn), req.room, req.content)
        except ProtocolError as exc:
            conn.deliver(protocol.error_frame(exc.code, exc.message, req.ref))
            return None
        if content is None or content == req.content:
            return req
        if not isinstance(content, (str, dict)):
            raise TypeError(f"on_post returns the content (a str or a dict) or None, not "
                            f"{content!r:.80}")
        return protocol.Post(req.room, content, req.ref, req.id)

    # -- after: told, in tasks of their own ---------------------------------------

    def left(self, conn: Connection, rooms: list[str] | tuple[str, ...]) -> None:
        if self.on_leave is not None:
            for room in rooms:
                self._later(self.on_leave(self._ctx(conn), room))

    def disconnected(self, conn: Connection) -> None:
        if self.on_disconnect is not None and conn.id in self._claims:
            self._later(self.on_disconnect(self._ctx(conn)))
        self._claims.pop(conn.id, None)

    def _later(self, call: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._guarded(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(call: Awaitable[Any]) -> None:
        try:
            await call
        except Exception:
            log.exception("an on_leave/on_disconnect hook raised")

    async def idle(self, timeout: float | None = None) -> None:
        """Wait for the running after-the-fact hooks (those past ``timeout`` are cancelled)."""
        while self._tasks:
            pending = set(self._tasks)
            _, slow = await asyncio.wait(pending, timeout=timeout)
            for task in slow:
                task.cancel()
            if slow:
                await asyncio.wait(slow)
                return
