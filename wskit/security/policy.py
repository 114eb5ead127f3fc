"""Who may do what: authorization policies, one question for every request.

Authentication (:mod:`wskit.security.tokens`) says *who* a connection is; this module
says what that user may *do*. Every ``join``, ``message`` (post), ``history``,
``presence`` query and ``direct`` a server receives is first put as one question::

    authorize(user, claims, action, room_or_user) -> bool   (or an awaitable of one)

``user`` is the token's ``sub``, ``claims`` the whole verified token payload (kept per
connection, replaced on ``refresh``), ``action`` one of :data:`ACTIONS`, and the last
argument the room id, or for ``direct`` the recipient's user id. Only ``True`` grants;
anything else, an exception included, refuses (fail closed).

Two policies are built in, chosen by name (``--authorize {open,claims}``):

* ``open``: everyone may do everything (the seed's behaviour, and wskit's default on
  loopback, for lessons);
* ``claims``: the token says. Its ``"rooms"`` claim maps shell-style patterns
  (:func:`fnmatch.fnmatchcase`: ``"lobby"``, ``"team-*"``) to ``"r"`` (join, history,
  presence) or ``"rw"`` (also post); no matching pattern, no access (as Centrifugo
  refuses a channel that nothing allows). A direct message needs ``"direct": true``, or
  a room shared with the recipient (both members of a room, each admitted by its own
  token): the server answers that part, see :class:`ClaimsPolicy`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import jwt

from ..exceptions import ConfigError

__all__ = ["ACTIONS", "ROOM_ACTIONS", "Authorize", "open_policy", "claims_policy",
           "ClaimsPolicy", "room_mode", "grants", "decide", "token_claims", "POLICIES"]

log = logging.getLogger("wskit.policy")

#: every action a policy is asked about
ACTIONS = ("join", "post", "history", "presence", "direct")
#: the actions on a room, and the mode each needs: "r" reads, "rw" also writes
ROOM_ACTIONS = {"join": "r", "history": "r", "presence": "r", "post": "rw"}
#: the names ``--authorize`` accepts
POLICIES = ("open", "claims")

#: ``authorize(user, claims, action, room_or_user)``: True grants, sync or async
Authorize = Callable[[str, Mapping[str, Any], str, str], "bool | Awaitable[bool]"]
#: ``shares_room(user, other)``: are both members of one room (the server knows)
SharesRoom = Callable[[str, str], Awaitable[bool]]

_MODES = ("r", "rw")


def open_policy(user: str, claims: Mapping[str, Any], action: str, target: str) -> bool:
    """Everyone may do everything: the seed's (and a lesson's) behaviour."""
    return True


def grants(claims: Mapping[str, Any]) -> dict[str, str]:
    """The token's valid room grants, pattern -> ``"r"`` or ``"rw"``.

    A malformed ``rooms`` claim (not an object) grants nothing, and so does a
    malformed entry: an issuer's typo must never widen access.
    """
    rooms = claims.get("rooms")
    if not isinstance(rooms, dict):
        return {}
    return {p: m for p, m in rooms.items() if isinstance(p, str) and p and m in _MODES}


def room_mode(claims: Mapping[str, Any], room: str) -> str | None:
    """The strongest mode any of the token's patterns grants on ``room``, or None."""
    best: str | None = None
    for pattern, mode in grants(claims).items():
        if fnmatchcase(room, pattern):
            if mode == "rw":
                return "rw"
            best = mode
    return best


def claims_policy(user: str, claims: Mapping[str, Any], action: str, target: str) -> bool:
    """The token's claims decide, with no knowledge of the server: rooms by their
    grants; a direct only with ``"direct": true`` (compose it in your own policy)."""
    need = ROOM_ACTIONS.get(action)
    if need is not None:
        mode = room_mode(claims, target)
        return mode is not None and (need == "r" or mode == "rw")
    if action == "direct":
        return claims.get("direct") is True
    return False


class ClaimsPolicy:
    """:func:`claims_policy`, plus the one fact only a server knows: a direct
    without ``"direct": true`` is allowed when the two users share a room (both are
    members of it now, each admitted by its own grants), which ``shares_room`` answers."""

    name = "claims"

    def __init__(self, shares_room: SharesRoom | None = None) -> None:
        self.shares_room = shares_room

    def __call__(self, user: str, claims: Mapping[str, Any], action: str,
                 target: str) -> bool | Awaitable[bool]:
        if claims_policy(user, claims, action, target):
            return True
        if action == "direct" and self.shares_room is not None and target != user:
            return self.shares_room(user, target)
        return False


async def decide(policy: Authorize, user: str, claims: Mapping[str, Any], action: str,
                 target: str) -> bool:
    """Ask ``policy``; True only for ``True``. A policy that raises refuses (and is logged:
    a bug in a policy must close the door, not open it)."""
    try:
        verdict: Any = policy(user, claims, action, target)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception:
        log.exception("the authorization policy failed on %s %r by %r: refused",
                      action, target, user)
        return False
    return verdict is True


def resolve(authorize: Authorize | str | None, shares_room: SharesRoom | None = None
            ) -> Authorize | None:
    """A policy from a name or a callable; None for ``open`` (nothing to ask)."""
    if authorize is None or authorize == "open" or authorize is open_policy:
        return None
    if authorize == "claims":
        return ClaimsPolicy(shares_room)
    if isinstance(authorize, str):
        raise ConfigError(f"unknown authorization policy {authorize!r}: choose one of "
                          f"{', '.join(POLICIES)}, or pass a function")
    if not callable(authorize):
        raise ConfigError("authorize must be 'open', 'claims' or a function "
                          "authorize(user, claims, action, room_or_user) -> bool")
    return authorize


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a token that :func:`~wskit.security.tokens.verify_token` has just
    accepted. Never call it on an unverified token: it does not check the signature."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
