"""The server API in Python: publish, disconnect, presence and history from code.

``await server.publish(room, content, user=...)`` posts to a room the way a client's
post goes (the same frame, the same batch to the backplane, so it gets the room's
next offset, is stored in the history, and every instance delivers it from the bus
in offset order); ``await server.disconnect(user, code)`` closes a user's
connections on *every* instance; ``await server.api.presence(room)`` and
``await server.history(room, limit)`` read what the cluster knows.
(``server.presence`` is the server's presence component, hence ``server.api``.)

:class:`wskit.Publisher` does the same from a process that serves no sockets (a
backend job), with only the backplane URL: it shares this module's frames.

**Disconnect across instances.** A user's connections on other instances are reached
through the user's own backplane channel (``{ns}:user:U``), which exactly the
instances holding one of its connections subscribe to. The control frame
``{"type": "wskit.disconnect", "code": C, "reason": R}`` travels in an ordinary
envelope there; :class:`ServerAPI` takes it off the bus before the relay routes
the channel to the user's sockets, so no client ever sees it (docs/protocol.md,
"Between instances").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..backplane import Backplane, Sent, decode_envelope
from ..core import protocol
from ..core.history import Page, with_offset
from ..core.protocol import CloseCode
from ..exceptions import BackplaneUnavailable, ConfigError, ProtocolError
from .connection import Outgoing
from .frames import FrameHandlers, Handler

H = TypeVar("H", bound=Callable[..., Any])

if TYPE_CHECKING:
    from .chat import ChatServer
    from .hooks import Hooks

__all__ = ["ServerAPI", "ServerAPIMethods", "Disconnected", "DISCONNECT_TYPE",
           "message_frame", "disconnect_frame", "check_close", "check_post", "history_answer"]

#: the control frame's type on a user channel (namespaced: no client frame has a dot)
DISCONNECT_TYPE = "wskit.disconnect"
_MARK = f'"type":"{DISCONNECT_TYPE}"'
#: application close codes a disconnect may use (RFC 6455 section 7.4: 4000-4999 are
#: private use, 3000-3999 registered), plus the standard ones that make sense here
_STANDARD_CLOSES = {CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.POLICY_VIOLATION,
                    CloseCode.SERVICE_RESTART, 1013}
MAX_USER_LEN = 128


class Disconnected(NamedTuple):
    """What :meth:`ServerAPI.disconnect` reached: connections closed on this instance,
    and how many *other* instances heard the disconnect on the bus."""

    here: int
    instances: int


def check_post(room: Any, content: Any, user: Any, max_size: int,
               objects: bool = False) -> None:
    """Refuse what a client's post would be refused for, with the same words."""
    if not isinstance(room, str) or not protocol.ROOM_PATTERN.fullmatch(room):
        raise ValueError("'roomId' must be 1-64 letters, digits, '_', '.', ':' or '-'")
    if objects and isinstance(content, dict):
        try:  # the same checks as a client's post, on the same JSON a client would send
            protocol.parse(json.dumps({"type": "message", "roomId": room, "content": content}),
                           objects=True)
        except (ProtocolError, TypeError, ValueError) as exc:
            raise ValueError(f"'content': {exc}") from None
        content = json.dumps(content, ensure_ascii=False)
    if not isinstance(content, str):
        raise ValueError("'content' must be a string" + (" or a JSON object" if objects else ""))
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_LEN or not user.isprintable():
        raise ValueError(f"'userId' must be 1-{MAX_USER_LEN} printable characters")
    if len(content.encode("utf-8", "surrogatepass")) > max_size:
        raise ValueError(f"'content' is longer than the server's {max_size} bytes")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("'content' contains a lone UTF-16 surrogate") from None


def check_close(code: Any, reason: Any) -> None:
    if (not isinstance(code, int) or isinstance(code, bool)
            or not (code in _STANDARD_CLOSES or 3000 <= code <= 4999)):
        raise ValueError("'code' must be 1000, 1001, 1008, 1012, 1013 or 3000-4999 "
                         "(RFC 6455 section 7.4)")
    if not isinstance(reason, str) or len(reason.encode()) > 120:
        raise ValueError("'reason' must be a string of at most 120 bytes")


def message_frame(mid: str, room: str, user: str, content: protocol.Content,
                  now: float) -> str:
    """The ``message`` frame, as a client's post makes it (docs/protocol.md)."""
    return protocol.encode({"type": "message", "roomId": room, "userId": user,
                            "content": content, "timestamp": now, "id": mid})


def disconnect_frame(code: int, reason: str) -> str:
    return protocol.encode({"type": DISCONNECT_TYPE, "code": code, "reason": reason})


def history_answer(room: str, page: Page) -> dict[str, Any]:
    """A history page as the ``history`` frame carries it (oldest first)."""
    return {"roomId": room, "offset": page.top, "epoch": page.epoch,
            "messages": [json.loads(with_offset(e.text, e.offset, page.epoch))
                         for e in page.entries]}


def published(result: Sent) -> int | None:
    """The offset of a sent post; raise its error."""
    if isinstance(result, BackplaneUnavailable):
        raise result
    return None if result is None else result[0]


class ServerAPI:
    """One server's API (see the module docstring)."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        bp = server.backplane
        if bp is not None:
            self._intercept(bp)

    # -- publish ------------------------------------------------------------------

    async def publish(self, room: str, content: protocol.Content, *,
                      user: str = "server") -> int | None:
        """Post ``content`` to ``room`` as ``user``; the post's offset (None with history
        off). Raises ValueError for what a client would get an error frame for, and
        BackplaneUnavailable when the bus is down (then it reached this instance only).
        """
        s = self._server
        check_post(room, content, user, s.settings.max_message_size,
                   s.settings.content_type == "json")
        s.stats.posts += 1
        s.stats.api_publishes += 1
        d, relay, log = s.delivery, s.relay, s.log
        mid = d.next_id()
        text = message_frame(mid, room, user, content, time.time())
        if relay is None:  # standalone: here, now, in offset order
            if log is None:
                d.fan_out(room, s.hub.room_targets(room), Outgoing(text), None)
                return None
            offset, epoch = log.append_here(room, text)
            d.fan_out(room, s.hub.room_targets(room), Outgoing(with_offset(text, offset, epoch)),
                      offset)
            return offset
        if log is None:  # history off: deliver here now, publish for the others
            d.fan_out(room, s.hub.room_targets(room), Outgoing(text), None)
        done: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        # sender "": no connection of ours posted it, so the bus delivers it to everyone
        def sent(result: Sent) -> None:
            if not done.done():
                done.set_result(result)

        relay.post_room(room, text, "", None if log is None else log.retention, sent)
        result = await done
        if isinstance(result, BackplaneUnavailable) and log is not None:
            d.fan_out(room, s.hub.room_targets(room), Outgoing(text), None)  # here only
        return published(result)

    # -- disconnect ---------------------------------------------------------------

    async def disconnect(self, user: str, code: int = CloseCode.POLICY_VIOLATION,
                         reason: str = "disconnected by the server") -> Disconnected:
        """Close every connection of ``user``, here and on every other instance.

        The default 1008 is final: wskit's client does not reconnect after it.
        Raises BackplaneUnavailable when the bus is down (after closing those here).
        """
        check_close(code, reason)
        code = int(code)
        relay = self._server.relay
        if relay is None:
            return Disconnected(self._close_here(user, code, reason), 0)
        # a user with a connection here has its channel subscribed (the connection
        # waited for that), so our own subscription is among those who hear it
        mine = 1 if self._server.hub.user_targets(user) else 0
        try:
            heard = await relay.publish_user(user, disconnect_frame(code, reason))
        finally:  # published first: closing ours unsubscribes the channel
            here = self._close_here(user, code, reason)
        return Disconnected(here, max(0, heard - mine))

    def _close_here(self, user: str, code: int, reason: str) -> int:
        targets = self._server.hub.user_targets(user)
        for conn in targets:
            conn.close_soon(code, reason)
        return len(targets)

    def _intercept(self, bp: Backplane) -> None:
        """Take disconnects off user channels before the relay routes them to sockets."""
        relay = self._server.relay
        assert relay is not None
        prefix, route, me = relay.user_channel(""), bp.on_message, self._server.instance_id

        def on_message(channel: str, data: str) -> None:
            if channel.startswith(prefix) and _MARK in data:
                if relay.signer.shared and not relay.proves(channel, data):
                    relay.refused += 1  # a disconnect no key holder sent
                    return
                try:
                    origin, frame = decode_envelope(data)
                except ValueError:
                    frame, origin = {}, ""
                if frame.get("type") == DISCONNECT_TYPE:
                    if origin.partition("/")[0] != me:  # ours were closed when sent
                        code: Any = frame.get("code")
                        reason: Any = frame.get("reason", "")
                        try:
                            check_close(code, reason)
                        except ValueError:
                            return  # a malformed control frame: never a client's frame
                        self._close_here(channel[len(prefix):], code, reason)
                    return
            if route is not None:
                route(channel, data)

        bp.on_message = on_message

    # -- reading --------------------------------------------------------------------

    async def presence(self, room: str) -> list[str]:
        """Who is in ``room`` on any instance, sorted. Raises BackplaneUnavailable."""
        return await self._server.presence.users(room)

    async def history(self, room: str, limit: int | None = None) -> dict[str, Any]:
        """The last ``limit`` retained messages of ``room`` (all retained: None), oldest
        first, with the room's ``offset`` and ``epoch``. Raises BackplaneUnavailable,
        and ConfigError when history is off."""
        log = self._server.log
        if log is None:
            raise ConfigError("history is off on this server (history_size 0)")
        self._server.stats.history_reads += 1
        page = await log.read(room, last=limit or log.retention.size)
        return history_answer(room, page)


class ServerAPIMethods:
    """The API's verbs on :class:`ChatServer` itself: ``await server.publish(...)``."""

    api: ServerAPI
    frames: FrameHandlers
    hooks: Hooks

    def on(self, kind: str, schema: Any = None, *,
           action: str | None = None) -> Callable[[Handler], Handler]:
        """Register a handler for a custom frame type: see :mod:`wskit.server.frames`."""
        return self.frames.on(kind, schema, action=action)

    # lifecycle hooks (wskit.server.hooks): ``@server.on_post`` above ``async def``
    def on_connect(self, hook: H) -> H:
        """``async def hook(ctx)``: before ``welcome``; a ProtocolError refuses (4003)."""
        return self.hooks.register("on_connect", hook)

    def on_join(self, hook: H) -> H:
        """``async def hook(ctx, room)``: before a join; a ProtocolError refuses it."""
        return self.hooks.register("on_join", hook)

    def on_post(self, hook: H) -> H:
        """``async def hook(ctx, room, content)``: before a post; a str returned replaces
        the content, a ProtocolError refuses it."""
        return self.hooks.register("on_post", hook)

    def on_leave(self, hook: H) -> H:
        """``async def hook(ctx, room)``: after a leave, or a close that left ``room``."""
        return self.hooks.register("on_leave", hook)

    def on_disconnect(self, hook: H) -> H:
        """``async def hook(ctx)``: after the connection closed."""
        return self.hooks.register("on_disconnect", hook)

    async def publish(self, room: str, content: protocol.Content, *,
                      user: str = "server") -> int | None:
        """See :meth:`ServerAPI.publish`."""
        return await self.api.publish(room, content, user=user)

    async def disconnect(self, user: str, code: int = CloseCode.POLICY_VIOLATION,
                         reason: str = "disconnected by the server") -> Disconnected:
        """See :meth:`ServerAPI.disconnect`."""
        return await self.api.disconnect(user, code, reason)

    async def history(self, room: str, limit: int | None = None) -> dict[str, Any]:
        """See :meth:`ServerAPI.history`."""
        return await self.api.history(room, limit)
