"""JSON Web Tokens for wskit connections (RFC 7519, HS256 by default).

Browsers cannot set headers on a WebSocket handshake, so the token travels in
the query string (``/ws?token=...``). Verification pins the algorithm list
(never trust the token's own ``alg`` header: the "alg": "none" attack) and
requires ``exp`` and ``sub``; ``sub`` is the user id.

The secret comes from an argument, else ``WSKIT_SECRET``, else a fixed
development secret that logs a loud warning: fine in a notebook on loopback,
wrong anywhere else.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

import jwt

from ..exceptions import AuthError

__all__ = ["issue_token", "verify_token", "resolve_secret", "DEV_SECRET", "ALGORITHM"]

log = logging.getLogger("wskit.auth")

ALGORITHM = "HS256"
#: Used only when no secret is given and WSKIT_SECRET is unset. 32+ bytes, so
#: PyJWT does not warn about a short HMAC key on top of our own warning.
DEV_SECRET = "wskit-development-secret-do-not-deploy"


_warned = False


class DevSecretWarning(UserWarning):
    """The built-in development secret is in use."""


def resolve_secret(secret: str | None = None, *, warn: bool = True) -> str:
    """The secret to use: the argument, else ``WSKIT_SECRET``, else the dev secret."""
    if secret:
        return secret
    env = os.environ.get("WSKIT_SECRET")
    if env:
        return env
    global _warned
    if warn and not _warned:
        _warned = True  # loud once per process, not once per server
        msg = (
            "wskit is using its built-in development secret: anyone can forge tokens. "
            "Pass secret=... or set WSKIT_SECRET before serving beyond your own machine."
        )
        log.warning(msg)
        warnings.warn(msg, DevSecretWarning, stacklevel=3)
    return DEV_SECRET


def issue_token(user: str, secret: str | None = None, ttl: float = 3600.0, **claims: object) -> str:
    """A signed token for ``user``, valid for ``ttl`` seconds."""
    if not isinstance(user, str) or not user:
        raise ValueError("user must be a non-empty string")
    now = int(time.time())
    payload = {"sub": user, "iat": now, "exp": now + int(ttl), **claims}
    return jwt.encode(payload, resolve_secret(secret, warn=False), algorithm=ALGORITHM)


def verify_token(token: str | None, secret: str | None = None, *, leeway: float = 0.0) -> str:
    """Return the user id in a valid token, or raise :class:`AuthError` saying why."""
    if not token:
        raise AuthError("missing token: connect to /ws?token=<JWT>")
    try:
        payload = jwt.decode(
            token,
            resolve_secret(secret, warn=False),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
            leeway=leeway,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    user = payload["sub"]
    if not isinstance(user, str) or not user:
        raise AuthError("token 'sub' must be a non-empty string")
    return user
