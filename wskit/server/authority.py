"""What each connection may do, and for how long: claims, policy, token lifetime, bounds.

:class:`Authority` keeps, per connection, the verified claims of its token (replaced by
a ``refresh``) and a timer at the token's ``exp`` (plus ``token_grace``): a token that
expires on a live connection closes it with 4001 "token expired", as a new connection
with it would be refused. Every room and direct request is first put to the server's
policy (:mod:`wskit.security.policy`). It also counts connections per user and per
client IP for their bounds, and closes a revoked user's connections.

The claims live here, beside the hub, rather than on the connection: the connection
is transport and outbox, and an idle one should stay small.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core import protocol
from ..core.hub import Hub
from ..core.protocol import CloseCode
from ..exceptions import AuthError, BackplaneUnavailable
from ..security.policy import (
    ROOM_ACTIONS,
    Authorize,
    ClaimsPolicy,
    decide,
    resolve,
    room_mode,
)
from .connection import Connection
from .presence import Presence
from .settings import Settings

__all__ = ["Authority", "REVOKE"]

#: the frame type that tells other instances, on a user's channel, to close that
#: user's connections (clients never see it; no client frame can carry this type)
REVOKE = "revoke"
#: decisions of the claims policy remembered per connection (until its next refresh)
_CACHE = 256
_MISSING = object()
#: the policy's action for each request it is asked about (docs/authorization.md)
_ACTIONS: dict[type, str] = {
    protocol.Join: "join", protocol.Post: "post", protocol.History: "history",
    protocol.PresenceQuery: "presence", protocol.Direct: "direct",
}


class _Grant:
    __slots__ = ("claims", "expires_at", "timer", "remote", "modes")

    def __init__(self, claims: dict[str, Any], remote: str | None) -> None:
        self.claims = claims
        self.expires_at = _exp(claims)
        self.timer: asyncio.TimerHandle | None = None
        self.remote = remote
        self.modes: dict[str, str | None] = {}


def _exp(claims: dict[str, Any]) -> float | None:
    exp = claims.get("exp")
    # as the token says (an integer NumericDate stays an integer on the wire)
    return exp if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class Authority:
    """One server's authorization state (see the module docstring)."""

    def __init__(self, settings: Settings, hub: Hub[Connection], presence: Presence,
                 authorize: Authorize | str | None,
                 claims_of: Callable[[str | None], Awaitable[dict[str, Any]]]) -> None:
        self.settings = settings
        self.hub = hub
        self.presence = presence
        #: None: the open policy (nothing to ask, nothing hidden)
        self.policy: Authorize | None = resolve(
            authorize if authorize is not None else settings.authorize, self.shares_room)
        #: a policy was named (even "open"), rather than left to the default
        self.chosen = authorize is not None or settings.authorize is not None
        #: a token's verified claims, or AuthError (ChatServer.claims: JWKS, aud, iss...)
        self._claims_of = claims_of
        self._grants: dict[Connection, _Grant] = {}
        self._per_ip: dict[str, int] = {}

    @property
    def open(self) -> bool:
        return self.policy is None

    # -- connections ---------------------------------------------------------

    def over_limit(self, user: str, remote: str | None) -> str | None:
        """Why a new connection of ``user`` from ``remote`` is over a bound, or None."""
        s = self.settings
        per_user = s.max_connections_per_user
        if per_user is not None and len(self.hub.user_targets(user)) >= per_user:
            return f"too many connections for this user (at most {per_user})"
        per_ip = s.max_connections_per_ip
        if per_ip is not None and remote is not None and self._per_ip.get(remote, 0) >= per_ip:
            return f"too many connections from this address (at most {per_ip})"
        return None

    def attach(self, conn: Connection, claims: dict[str, Any], remote: str | None) -> float | None:
        """Keep the (verified) claims of ``conn``'s token; returns its ``exp``."""
        grant = self._grants[conn] = _Grant(claims, remote)
        if self.policy is None:  # nothing will ask: keep the expiry, not the whole payload
            grant.claims = {}
        if remote is not None:
            self._per_ip[remote] = self._per_ip.get(remote, 0) + 1
        self._schedule(conn, grant)
        return grant.expires_at

    def detach(self, conn: Connection) -> None:
        grant = self._grants.pop(conn, None)
        if grant is None:
            return
        if grant.timer is not None:
            grant.timer.cancel()
        if grant.remote is not None:
            left = self._per_ip[grant.remote] - 1
            if left:
                self._per_ip[grant.remote] = left
            else:
                del self._per_ip[grant.remote]

    def expires_at(self, conn: Connection) -> float | None:
        grant = self._grants.get(conn)
        return None if grant is None else grant.expires_at

    def _schedule(self, conn: Connection, grant: _Grant) -> None:
        if grant.timer is not None:
            grant.timer.cancel()
            grant.timer = None
        if grant.expires_at is None:
            return
        # exp is wall-clock time (RFC 7519 NumericDate); the loop's clock is monotonic
        delay = max(0.0, grant.expires_at + self.settings.token_grace - time.time())
        grant.timer = asyncio.get_running_loop().call_later(delay, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        conn.close_soon(CloseCode.UNAUTHORIZED, "token expired")

    # -- requests ------------------------------------------------------------

    async def admits(self, conn: Connection, request: protocol.Request,
                     posts_done: Callable[[Connection], Awaitable[None]]) -> bool:
        """Put the request to the policy; a refusal is one ``forbidden`` error that says
        nothing of the room (its existence, members, contents) or the user. ``posts_done``
        waits for the connection's earlier posts, so replies keep the requests' order."""
        kind = type(request)
        action = _ACTIONS.get(kind)
        if action is None:
            return True
        target = request.to if kind is protocol.Direct else request.room  # type: ignore[union-attr]
        if await self.allows(conn, action, target):
            return True
        await posts_done(conn)
        what = (f"send direct messages to {target!r}" if action == "direct"
                else f"{action} room {target!r}")
        conn.deliver(protocol.error_frame("forbidden", f"not allowed to {what}", request.ref))
        return False

    async def allows(self, conn: Connection, action: str, target: str) -> bool:
        policy = self.policy
        if policy is None:
            return True
        grant = self._grants.get(conn)
        if grant is None:
            return False
        need = ROOM_ACTIONS.get(action)
        if need is not None and type(policy) is ClaimsPolicy:
            # the built-in policy depends on the claims alone: remember each room's mode
            mode: Any = grant.modes.get(target, _MISSING)
            if mode is _MISSING:
                if len(grant.modes) >= _CACHE:
                    grant.modes.clear()
                mode = grant.modes[target] = room_mode(grant.claims, target)
            return mode is not None and (need == "r" or mode == "rw")
        return await decide(policy, conn.user, grant.claims, action, target)

    async def shares_room(self, user: str, other: str) -> bool:
        """Are ``user`` (a connection here) and ``other`` members of one room now?
        Local rooms first; then presence, which knows every instance."""
        hub = self.hub
        rooms = {r for c in hub.user_targets(user) for r in hub.rooms_of(c)}
        if any(hub.user_in_room(other, room) for room in rooms):
            return True
        for room in sorted(rooms):
            try:
                if other in await self.presence.users(room):
                    return True
            except BackplaneUnavailable:
                return False  # unknown: refuse
        return False

    async def refresh(self, conn: Connection, req: protocol.Refresh,
                      leave: Callable[[Connection, protocol.Leave], None]) -> None:
        """A new token for the live connection: same user, or an error and no change.

        Its claims apply at once: after ``refreshed``, every room the new token no
        longer lets the connection join is left (``leave``: one ``left`` frame each,
        without a ``ref``), so narrower grants take effect without a reconnect."""
        try:
            claims = await self._claims_of(req.token)
        except AuthError as exc:
            conn.deliver(protocol.error_frame("invalid_token", f"refresh refused: {exc}",
                                              req.ref))
            return
        if str(claims["sub"]) != conn.user:
            conn.deliver(protocol.error_frame(
                "invalid_token", "refresh refused: the token is for another user (a "
                "connection's user cannot change)", req.ref))
            return
        grant = self._grants.get(conn)
        if grant is None:  # closing
            return
        grant.expires_at = _exp(claims)
        grant.claims, grant.modes = (claims if self.policy is not None else {}), {}
        self._schedule(conn, grant)
        conn.deliver(protocol.reply("refreshed", req.ref, expiresAt=grant.expires_at))
        if self.policy is None:
            return
        for room in self.hub.rooms_of(conn):
            if not await self.allows(conn, "join", room) and self.hub.is_member(conn, room):
                leave(conn, protocol.Leave(room))

    # -- revocation ----------------------------------------------------------

    def close_user(self, user: str, reason: str = "token revoked") -> int:
        """Close every connection of ``user`` here with 4001; how many."""
        targets = self.hub.user_targets(user)
        for conn in targets:
            conn.close_soon(CloseCode.UNAUTHORIZED, reason)
        return len(targets)
