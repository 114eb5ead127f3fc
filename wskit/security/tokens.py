"""JSON Web Tokens for wskit connections (RFC 7519): HS256, or RS256/ES256 from a JWKS.

Browsers cannot set headers on a WebSocket handshake, so the token travels in
the query string (``/ws?token=...``). Verification pins the algorithm list
(never trust the token's own ``alg`` header: the "alg": "none" attack) and
requires ``exp`` and ``sub``; ``sub`` is the user id (rules in
:mod:`wskit.security.identity`).

Two kinds of key:

* **HS256 with a shared secret** (lessons, and servers that issue their own tokens):
  the secret comes from an argument, else ``WSKIT_SECRET``, else a fixed
  development secret that logs a loud warning: fine on loopback, refused by
  ``serve`` anywhere else. A secret must be at least 32 bytes (RFC 7518 §3.2:
  an HS256 key at least as long as the hash; PyJWT's own minimum).
* **RS256/ES256 from an identity provider's JWKS** (:class:`TokenVerifier` with
  ``jwks_url``): HS256 is then not accepted at all, so nobody holding a shared
  secret can mint tokens.

``audience``/``issuer`` pin ``aud``/``iss``; ``max_lifetime`` requires ``iat`` and
bounds ``exp - iat`` (a token valid until the year 9999 is refused).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import jwt

from ..exceptions import AuthError, ConfigError
from .identity import check_user_id
from .jwks import ASYMMETRIC, JwksKeys

__all__ = ["issue_token", "verify_token", "resolve_secret", "check_secret", "TokenVerifier",
           "DEV_SECRET", "ALGORITHM", "ASYMMETRIC", "MIN_SECRET_BYTES"]

log = logging.getLogger("wskit.auth")

ALGORITHM = "HS256"
#: RFC 7518 §3.2 and PyJWT's minimum HMAC key for HS256
MIN_SECRET_BYTES = 32
#: Used only when no secret is given and WSKIT_SECRET is unset: published, so
#: anyone can forge tokens with it (``serve`` allows it on loopback only).
DEV_SECRET = "wskit-development-secret-do-not-deploy"


_warned = False


class DevSecretWarning(UserWarning):
    """The built-in development secret is in use."""


def check_secret(secret: str, where: str = "secret") -> str:
    """``secret`` if it can sign HS256 tokens safely, else :class:`ConfigError`."""
    if not secret:
        # an empty value is a mistake (an unset variable in a script), never "use the default"
        raise ConfigError(f"{where} is empty: give a secret of at least {MIN_SECRET_BYTES} "
                          f"bytes (--secret or WSKIT_SECRET), e.g. "
                          f"python -c 'import secrets; print(secrets.token_hex(32))'")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{where} is {len(secret.encode())} bytes: an HS256 secret needs at "
                          f"least {MIN_SECRET_BYTES} (RFC 7518 §3.2)")
    return secret


def resolve_secret(secret: str | None = None, *, warn: bool = True) -> str:
    """The secret to use: the argument, else ``WSKIT_SECRET``, else the dev secret.

    An empty or short secret, given or in the environment, is a :class:`ConfigError`.
    """
    if secret is not None:
        return check_secret(secret)
    env = os.environ.get("WSKIT_SECRET")
    if env is not None:
        return check_secret(env, "WSKIT_SECRET")
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
    """A signed HS256 token for ``user``, valid for ``ttl`` seconds."""
    if not isinstance(user, str) or not user:
        raise ValueError("user must be a non-empty string")
    now = int(time.time())
    payload = {"sub": user, "iat": now, "exp": now + int(ttl), **claims}
    return jwt.encode(payload, resolve_secret(secret, warn=False), algorithm=ALGORITHM)


class TokenVerifier:
    """How a server checks tokens: which keys, which ``aud``/``iss``, how long a life.

    With ``jwks_url`` (or ``jwks``) only RS256/ES256 tokens signed by a key of that
    set pass, and :attr:`needs_io` is True: find the key with :meth:`key_for` off the
    event loop, then :meth:`decode`.
    """

    def __init__(self, secret: str | None = None, *, jwks_url: str | None = None,
                 audience: str | None = None, issuer: str | None = None,
                 max_lifetime: float | None = None, leeway: float = 0.0,
                 jwks: JwksKeys | None = None) -> None:
        if max_lifetime is not None and max_lifetime <= 0:
            raise ConfigError("max_token_lifetime must be positive (None: no maximum)")
        self.jwks = jwks if jwks is not None else JwksKeys(jwks_url) if jwks_url else None
        #: the HS256 secret; None when keys come from a JWKS
        self.secret = None if self.jwks is not None else resolve_secret(secret)
        self.audience = audience
        self.issuer = issuer
        self.max_lifetime = max_lifetime
        self.leeway = leeway

    @property
    def needs_io(self) -> bool:
        """Finding the key may fetch a JWKS (blocking): do it in a thread."""
        return self.jwks is not None

    @property
    def dev_secret(self) -> bool:
        """Tokens are checked with the published development secret."""
        return self.secret == DEV_SECRET

    def key_for(self, token: str | None) -> tuple[object, str]:
        """The key and algorithm to check ``token`` with (blocking with a JWKS)."""
        if not token:
            raise AuthError("missing token: connect to /ws?token=<JWT>")
        if self.jwks is not None:
            return self.jwks.key_for(token)
        assert self.secret is not None
        return self.secret, ALGORITHM

    def decode(self, token: str | None, key: tuple[object, str] | None = None) -> dict[str, Any]:
        """The claims of a valid token, ``sub`` checked; :class:`AuthError` saying why not."""
        if not token:
            raise AuthError("missing token: connect to /ws?token=<JWT>")
        secret, algorithm = key if key is not None else self.key_for(token)
        require = ["exp", "sub"]
        if self.max_lifetime is not None:
            require.append("iat")
        if self.audience is not None:
            require.append("aud")
        if self.issuer is not None:
            require.append("iss")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, secret,  # type: ignore[arg-type]
                algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                options={"require": require}, leeway=self.leeway)
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"token audience is not {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"token issuer is not {self.issuer!r}") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if self.max_lifetime is not None:
            lifetime = claims["exp"] - claims["iat"]
            if lifetime > self.max_lifetime:
                raise AuthError(f"token lifetime {lifetime:g} s exceeds the maximum of "
                                f"{self.max_lifetime:g} s")
        check_user_id(claims["sub"])
        return claims

    def verify(self, token: str | None) -> str:
        """The user id in a valid token (blocking with a JWKS)."""
        return str(self.decode(token)["sub"])


def verify_token(token: str | None, secret: str | None = None, *, leeway: float = 0.0) -> str:
    """Return the user id in a valid HS256 token, or raise :class:`AuthError` saying why."""
    return TokenVerifier(secret, leeway=leeway).verify(token)
