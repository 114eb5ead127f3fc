"""The framework-independent chat server: what happens to every frame.

:class:`ChatServer` owns one :class:`~wskit.core.hub.Hub` (who is where), one optional
:class:`~wskit.server.relay.Relay` (the other instances, through a backplane), the
:class:`~wskit.server.connection.Connection` of every client, and two helpers that answer
requests: :class:`~wskit.server.delivery.Delivery` (room posts, presence events, direct
messages) and :class:`~wskit.server.membership.Membership` (join, leave, history,
presence queries). Adapters call exactly two things:
:meth:`ChatServer.origin_allowed` before the upgrade, and
:meth:`ChatServer.serve_connection` after it. Everything else (auth, parsing,
rooms, fan-out, rate limits, back-pressure, errors, cleanup) happens here and in
those two modules, once, for both frameworks.

Every client frame that carries a ``ref`` gets exactly one reply with that
``ref`` (a ``pong`` frame, itself a reply, gets none): the acknowledgement, or
one error frame.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from ..backplane import Backplane, from_url
from ..core import protocol
from ..core.history import Page, Retention
from ..core.hub import Hub
from ..core.protocol import CloseCode
from ..core.ratelimit import TokenBucket, Verdict
from ..exceptions import AuthError, ProtocolError
from ..security.origins import host_allowed, origin_allowed
from ..security.policy import Authorize
from ..security.signing import Signer
from ..security.tokens import TokenVerifier, check_secret
from .api import ServerAPI, ServerAPIMethods
from .authority import REVOKE, Authority
from .connection import Connection, Outgoing, Transport, close_within
from .delivery import Delivery
from .frames import FrameHandlers
from .hooks import Hooks
from .logs import client_faults
from .membership import Membership
from .metrics import Counts, ServerMetrics
from .positions import Positions
from .presence import MemoryPresence, Presence
from .recovery import RoomLog
from .relay import Inbound, Relay
from .settings import Settings

log = logging.getLogger("wskit.server")
_REVOKE_HEAD = f'{{"type":"{REVOKE}"'

__all__ = ["ChatServer"]

#: closes a client brought on itself: one rate-limited line each (wskit.server.logs)
_CLIENT_FAULTS = {CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SLOW_CONSUMER,
                  CloseCode.UNSUPPORTED_DATA, CloseCode.RATE_LIMITED}


class ChatServer(ServerAPIMethods):
    """One wskit instance. Start it, hand it connections, stop it.

    ``backplane`` is a :class:`Backplane`, a URL (``memory://``, ``fakeredis://``,
    ``redis://...``, ``"none"``), or None for the default (``WSKIT_REDIS_URL``,
    else the in-process fakeredis).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backplane: Backplane | str | None = None,
        authorize: Authorize | str | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings or Settings()
        if overrides:
            settings = settings.with_(**overrides)
        self.settings = settings
        #: which keys, ``aud``/``iss`` and lifetime a token needs (HS256 secret or JWKS)
        self.verifier = TokenVerifier(
            settings.secret, jwks_url=settings.jwks_url, audience=settings.audience,
            issuer=settings.issuer, max_lifetime=settings.max_token_lifetime)
        #: host names (beyond IP literals and ``localhost``) that ``/healthz`` and
        #: ``/token`` answer to; the runner adds the host it binds
        self.allowed_hosts: set[str] = {h.lower() for h in settings.allowed_hosts or ()}
        #: plain counters the modules bump; ``metrics`` reads them when scraped
        self.stats = Counts()
        self.draining = False  # stop() under way: /readyz answers 503
        name = settings.instance_name or "wskit"
        self.instance_id = f"{name}-{uuid.uuid4().hex[:6]}"
        self.hub: Hub[Connection] = Hub()
        bp = backplane if isinstance(backplane, Backplane) else from_url(backplane)
        self.relay: Relay | None = (
            None if bp is None else Relay(bp, self.instance_id, settings.namespace, self._route,
                                          Signer(settings.backplane_key)))
        #: offsets, history and recovery; None when history is off (``history_size`` 0)
        self.log: RoomLog | None = (
            RoomLog(Retention(settings.history_size, settings.history_ttl), self.relay)
            if settings.history_size else None)
        #: room posts and direct messages, to here and (through the relay) elsewhere
        self.delivery = Delivery(settings, self.hub, self.relay, self.log, self.instance_id)
        #: who is in which room on any instance (the relay's store, or one of our own)
        self.presence = Presence(
            self.relay if self.relay is not None else MemoryPresence(), self.instance_id,
            settings.presence_ttl,
            self.delivery.announce if settings.presence_events else None)
        #: join, leave, history and presence requests
        self.membership = Membership(settings, self.hub, self.relay, self.log, self.presence)
        #: who may do what, and until when (docs/authorization.md)
        self.authority = Authority(settings, self.hub, self.presence, authorize, self.claims)
        # under any policy but open, no reply says whether another user is online
        self.delivery.hide_offline = not self.authority.open
        #: where each room stands here, and the repair of what the bus lost
        #: (history and a backplane: a subscription can miss posts)
        self.positions: Positions | None = (
            Positions(self._deliver_room, self._read_position)
            if settings.room_repair and self.log is not None and self.relay is not None
            else None)
        self.delivery.positions = self.membership.positions = self.positions
        self._checking: asyncio.Task[None] | None = None
        #: by id: a post back from the bus names its sender by id
        self._connections: dict[str, Connection] = {}
        self._started = False
        self._objects = settings.content_type == "json"  # JSON objects as post content
        self.delivery.stats = self.membership.stats = self.stats
        #: this instance's Prometheus registry (``/metrics``), never the global one
        self.metrics = ServerMetrics(self)
        #: publish, disconnect, presence, history from code (wskit.server.api)
        self.api = ServerAPI(self)
        #: custom frame types (``@server.on("app.typing", Schema)``: wskit.server.frames)
        self.frames = FrameHandlers(self)
        #: on_connect, on_join, on_post, on_leave, on_disconnect (wskit.server.hooks)
        self.hooks = Hooks(self)

    @property
    def backplane(self) -> Backplane | None:
        return None if self.relay is None else self.relay.backplane

    def __repr__(self) -> str:
        bp = self.backplane.url if self.backplane else "none"
        return (f"<ChatServer {self.instance_id} connections={len(self.hub)} "
                f"rooms={len(self.hub.rooms())} backplane={bp}>")

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Connect the backplane. Raises BackplaneUnavailable where it is called."""
        if self._started:
            return
        if self.relay is not None:
            await self.relay.start()
        if self.positions is not None:
            assert self.backplane is not None
            self.backplane.on_resubscribed = self.positions.check_all
            if self.settings.position_check:
                self._checking = asyncio.get_running_loop().create_task(
                    self._check_positions(self.settings.position_check),
                    name="wskit-position-check")
        self.presence.start()
        self._started = True
        self.draining = False

    @property
    def started(self) -> bool:
        return self._started

    async def stop(self, code: int = CloseCode.SERVICE_RESTART,
                   reason: str = "server restarting: reconnect to resume") -> None:
        """Drain: close every connection with 1012 (pending frames flushed first), so
        clients reconnect, elsewhere if need be, and recover what they miss; then
        the backplane. Closing takes at most ``drain_timeout`` s in all."""
        self.draining = True
        self.presence.pause()  # the closes first; presence catches up in its stop()
        closing = [asyncio.ensure_future(c.close(code, reason, flush=True))
                   for c in list(self._connections.values())]
        if closing:
            _, slow = await asyncio.wait(closing, timeout=self.settings.drain_timeout)
            for fut in slow:  # past the drain: drop what is left
                fut.cancel()
            if slow:
                await asyncio.wait(slow)
        await self.hooks.idle(self.settings.drain_timeout)
        await self.presence.stop()
        if self._checking is not None:
            self._checking.cancel()
            await asyncio.wait([self._checking])
            self._checking = None
        if self.positions is not None:
            await self.positions.stop()
        if self.relay is not None:
            await self.relay.stop(timeout=self.settings.drain_timeout)
        self._started = False

    async def settled(self) -> None:
        """Wait until background bookkeeping (unsubscribing after a close, presence)
        is done."""
        await self.hooks.idle()
        await self.presence.idle()
        if self.positions is not None:
            await self.positions.idle()
        if self.relay is not None:
            await self.relay.idle()

    async def __aenter__(self) -> ChatServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handshake -----------------------------------------------------------

    @property
    def secret(self) -> str | None:
        """The HS256 secret tokens are checked (and issued) with; None with a JWKS."""
        return self.verifier.secret

    @secret.setter
    def secret(self, value: str) -> None:  # a key rotation
        self.verifier.secret = check_secret(value)

    def origin_allowed(self, origin: str | None, host: str | None = None) -> bool:
        """Cross-Site WebSocket Hijacking guard, checked before the upgrade.

        Browsers always send ``Origin`` on a WebSocket handshake and a page
        cannot forge it; non-browser clients usually send none and are let
        through (they could forge any header anyway; the token is what
        authenticates them). With no ``Settings.origins``, only the server's own
        pages (``Origin`` host equal to the ``Host`` header) pass, and only on a
        ``Host`` this server answers (:meth:`host_allowed`): after DNS rebinding, a
        hostile page is same-origin with itself (``Origin`` and ``Host`` both
        ``evil.example``), so the Host check is what refuses it.
        """
        allowed = self.settings.origins
        if not origin_allowed(origin, host, allowed):
            return False
        return origin is None or allowed is not None or self.host_allowed(host)

    def host_allowed(self, host: str | None) -> bool:
        """DNS-rebinding guard for ``/healthz`` and ``/token`` (see security.origins)."""
        return host_allowed(host, self.allowed_hosts)

    async def claims(self, token: str | None) -> dict[str, Any]:
        """The claims of a valid token, or :class:`AuthError` saying why not.

        A JWKS key lookup may fetch over the network with blocking urllib, so it
        runs in a thread, never on the event loop.
        """
        v = self.verifier
        key = await asyncio.to_thread(v.key_for, token) if v.needs_io else None
        return v.decode(token, key)

    async def authenticate(self, token: str | None) -> str:
        return str((await self.claims(token))["sub"])

    # -- one connection ------------------------------------------------------

    async def serve_connection(self, transport: Transport, token: str | None,
                               remote: str | None = None) -> None:
        """Run one accepted WebSocket from first frame to last; never raises.

        A missing or bad token closes with 4001 and the reason (after the
        upgrade, because a browser cannot read the status of a refused one).
        ``remote`` is the client's IP address, for ``max_connections_per_ip``.
        """
        self.stats.connections += 1
        try:
            claims = await self.claims(token)
        except AuthError as exc:
            self.stats.closed(CloseCode.UNAUTHORIZED)
            if not await close_within(transport, CloseCode.UNAUTHORIZED, str(exc),
                                      self.settings.close_timeout):
                transport.abort()
            return
        user = str(claims["sub"])
        refusal = self.authority.over_limit(user, remote)
        if refusal is not None:
            if not await close_within(transport, CloseCode.TOO_MANY_CONNECTIONS, refusal,
                                      self.settings.close_timeout):
                transport.abort()
            return
        s = self.settings
        conn = Connection(transport, user, outbox_limit=s.outbox_limit,
                          outbox_bytes=s.outbox_bytes, close_timeout=s.close_timeout,
                          on_close=self._on_close,
                          heartbeat=(None if s.ping_interval is None or s.ping_timeout is None
                                     else (s.ping_interval, s.ping_timeout)))
        if s.rate_limit is not None:
            conn.bucket = TokenBucket(s.rate_limit, s.rate_burst,
                                      now=asyncio.get_running_loop().time())
        self._connections[conn.id] = conn
        self.authority.attach(conn, claims, remote)
        try:
            refusal, greeting = await self.hooks.connecting(conn, claims)
            if refusal is not None:
                conn.close_soon(CloseCode.FORBIDDEN, refusal)
                return
            if self.hub.add(conn, user) and self.relay is not None:
                self.relay.user_arrived(user)
                await self.relay.settle()
            conn.start()
            conn.deliver(self._welcome(conn))
            for frame in greeting:  # what on_connect sent, after welcome
                conn.deliver(frame)
            await self._read(conn)
        finally:
            await conn.close(CloseCode.NORMAL)
            self._connections.pop(conn.id, None)
            self.delivery.forget(conn)
            self.hooks.disconnected(conn)

    async def _read(self, conn: Connection) -> None:
        """The read loop, run in the task that serves the connection: no task of its
        own, because an idle connection should hold as little as possible.

        The loop ends when the client closes. The connection can also be closed
        from elsewhere (outbox full, heartbeat, server stop): then ``_on_close``
        cancels this task rather than leave it waiting on a silent peer, and that
        cancellation (``conn.read_cancelled``) ends the loop here and goes no further.
        """
        task = conn.reader = asyncio.current_task()
        try:
            await self._read_loop(conn)
        except asyncio.CancelledError:
            if not conn.read_cancelled:
                raise  # not the close's doing: the server's task itself was cancelled
            # Python 3.11+ counts cancellations: take ours back; if another remains
            # (someone cancelled the serving task as well), that one propagates
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None and uncancel() > 0:
                raise
        finally:
            conn.reader = None

    async def _read_loop(self, conn: Connection) -> None:
        receive = conn.transport.receive
        while not conn.closing:
            try:
                data = await receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the framework gave up on this peer
                client_faults.log(logging.INFO, "reading from %s failed: %r", conn.id, exc)
                conn.close_soon(CloseCode.GOING_AWAY, "read failed")
                return
            if data is None:
                return
            if isinstance(data, bytes):
                conn.close_soon(CloseCode.UNSUPPORTED_DATA,
                                "binary frames are not supported; send JSON text frames")
                return
            try:
                await self.handle_text(conn, data)
            except Exception:
                # A bug, not bad input (bad input gets an error frame): close this
                # connection with 1011 and keep serving everyone else.
                log.exception("internal error handling a frame from %s", conn.id)
                conn.close_soon(CloseCode.INTERNAL_ERROR, "internal server error")
                return

    def _welcome(self, conn: Connection) -> str:
        s = self.settings
        heartbeat = ({"interval": s.ping_interval, "timeout": s.ping_timeout}
                     if s.ping_interval else None)
        return protocol.encode({
            "type": "welcome", "userId": conn.user, "connectionId": conn.id,
            "instance": self.instance_id, "heartbeat": heartbeat,
            "maxMessageSize": s.max_message_size,
            "expiresAt": self.authority.expires_at(conn),
        })

    def _on_close(self, conn: Connection) -> None:
        """Called once, synchronously, when a connection starts closing."""
        self.stats.closed(conn.close_code, conn.user, conn.close_reason)
        reader = conn.reader
        # (a close by the reading task itself needs no cancel: its loop checks
        # conn.closing before it reads again)
        if reader is not None and reader is not asyncio.current_task():
            conn.reader = None
            conn.read_cancelled = True
            reader.cancel()
        if conn.close_code in _CLIENT_FAULTS:
            client_faults.log(logging.INFO, "closing %s (user %r) with %s: %s", conn.id,
                              conn.user, conn.close_code, conn.close_reason)
        if self.hooks.on_leave is not None:
            self.hooks.left(conn, list(self.hub.rooms_of(conn)))
        self.membership.depart(conn)
        self.authority.detach(conn)

    # -- frames --------------------------------------------------------------

    async def handle_text(self, conn: Connection, text: str) -> None:
        """Act on one text frame from ``conn``: exactly one reply per ``ref``."""
        try:
            request = protocol.parse(text, objects=self._objects)
        except ProtocolError as exc:
            await self.delivery.posts_done(conn)
            if not self._admit(conn, exc.ref):
                return
            if exc.code == "unknown_type" and self.frames.handlers and \
                    await self.frames.dispatch(conn, text, exc.ref):
                return  # a custom frame type: its handler answered
            conn.deliver(protocol.error_frame(exc.code, exc.message, exc.ref))
            return
        if type(request) is protocol.Pong:
            conn.pong()  # never rate-limited: it only proves the client is alive
            return
        if type(request) is not protocol.Post:
            await self.delivery.posts_done(conn)
        if not self._admit(conn, request.ref):
            return
        if not self.authority.open and not await self.authority.admits(
                conn, request, self.delivery.posts_done):
            return
        match request:
            case protocol.Post():
                if self.hooks.on_post is not None:
                    post = await self.hooks.posting(conn, request)
                    if post is None:
                        return
                    request = post
                await self.delivery.post(conn, request)
            case protocol.Join():
                if self.hooks.on_join is None or await self.hooks.joining(conn, request):
                    await self.membership.join(conn, request)
            case protocol.Leave():
                self._leave(conn, request)
            case protocol.Direct():
                await self.delivery.direct(conn, request)
            case protocol.History():
                await self.membership.history(conn, request)
            case protocol.PresenceQuery():
                await self.membership.who(conn, request)
            case protocol.Ping():
                conn.deliver(protocol.reply("pong", request.ref))
            case protocol.Refresh():
                await self.authority.refresh(conn, request, self._leave)

    def _leave(self, conn: Connection, req: protocol.Leave) -> None:
        joined = self.hooks.on_leave is not None and self.hub.is_member(conn, req.room)
        self.membership.leave(conn, req)
        if joined:
            self.hooks.left(conn, [req.room])

    def _admit(self, conn: Connection, ref: protocol.Ref) -> bool:
        """Spend a token of the connection's rate limit; answer or close if none is left."""
        bucket = conn.bucket
        if bucket is None:
            return True
        verdict = bucket.take(asyncio.get_running_loop().time())
        if verdict is Verdict.ACCEPT:
            return True
        self.stats.rate_limited += 1
        if verdict is Verdict.CLOSE:
            # flush: the rate_limited errors already queued are its replies
            conn.close_soon(CloseCode.RATE_LIMITED,
                            f"kept sending over the rate limit of {bucket.rate:g} frames/s",
                            flush=True)
        else:
            conn.deliver(protocol.error_frame(
                "rate_limited", f"over {bucket.rate:g} frames/s (burst {bucket.burst}); "
                f"dropped; retry in {bucket.retry_after():.2f}s", ref))
        return False

    # -- from other instances -----------------------------------------------

    def _route(self, event: Inbound) -> None:
        if event.kind == "user":
            if event.text.startswith(_REVOKE_HEAD):  # revoke(): another instance's
                self.authority.close_user(event.target)
                return
            targets = self.hub.user_targets(event.target)
            if targets:
                self.delivery.fan_out(event.target, targets, Outgoing(event.text), None)
        elif event.offset is not None and event.epoch is not None and self.positions:
            self.positions.arrived(event)  # it calls _deliver_room, in offset order
        else:
            self._deliver_room(event)

    def _deliver_room(self, event: Inbound, floors: dict[Connection, int] | None = None
                      ) -> None:
        """A room frame to the members here: not its sender (our own post, back from
        the bus), nor, for a presence event, the user it is about, nor a member
        whose join already gave it (``floors``, from :class:`Positions`)."""
        sender = None if event.sender is None else self._connections.get(event.sender)
        targets = self.hub.room_targets(event.target, sender)
        if event.whose is not None:
            targets = [t for t in targets if t.user != event.whose]
        if floors is not None and event.offset is not None:
            offset = event.offset
            targets = [t for t in targets if floors.get(t, 0) < offset]
        if targets:
            self.delivery.fan_out(event.target, targets, Outgoing(event.text), event.offset)

    async def _read_position(self, room: str, after: int | None) -> Page:
        assert self.log is not None
        if after is None:
            return await self.log.read(room, last=0)
        return await self.log.read(room, after=after)

    async def _check_positions(self, every: float) -> None:
        """Compare each room's delivered offset with the store's top, every ``every``
        s: a loss no jump and no reconnect showed is repaired within one period."""
        assert self.positions is not None
        while True:
            await asyncio.sleep(every)  # a period, not synchronisation
            try:
                await self.positions.compare()
            except Exception:  # a bug here must not end the checks
                log.exception("position check failed")

    # -- revocation ----------------------------------------------------------

    async def revoke(self, user: str) -> int:
        """Close every connection of ``user`` with 4001 "token revoked", here and (over
        the user's backplane channel, the one direct messages use) on every instance.

        Returns how many were closed here. A new connection with a still-valid token
        is not refused: stop issuing the user tokens (docs/authorization.md).
        Raises BackplaneUnavailable if the other instances cannot be told.
        """
        closed = self.authority.close_user(user)
        if self.relay is not None:
            await self.relay.publish_user(user, protocol.encode({"type": REVOKE}))
        return closed

    # -- helpers -------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections.values())
