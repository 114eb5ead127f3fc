"""Signing keys from an identity provider's JWKS endpoint (RFC 7517).

Keycloak, Auth0, Cognito and Azure AD sign tokens with RS256 or ES256 and
publish their public keys at a JWKS URL; a token names its key with the ``kid``
header. :class:`JwksKeys` wraps PyJWT's ``PyJWKClient``, which caches the key set
(``lifespan`` seconds) and, when a token names a ``kid`` it does not hold (a key
rotation), fetches the set again, at most once per ``cooldown`` seconds (so
tokens with made-up ``kid`` values cannot make wskit hammer the provider).

The fetch is blocking urllib I/O: callers on an event loop run
:meth:`JwksKeys.key_for` in a thread (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import threading
import time

import jwt

from ..exceptions import AuthError, ConfigError

__all__ = ["ASYMMETRIC", "JwksKeys"]

#: the algorithms accepted from a JWKS; anything else (HS*, none, RS512...) is refused
ASYMMETRIC = ("RS256", "ES256")


class JwksKeys:
    """The signing keys published at ``url``, cached."""

    def __init__(self, url: str, *, lifespan: float = 300.0, cooldown: float = 30.0,
                 timeout: float = 10.0) -> None:
        if not url.lower().startswith(("http://", "https://")):
            # urllib would also open file://, ftp://, data: URLs
            raise ConfigError(f"JWKS URL {url!r}: only http and https are supported")
        try:
            self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan,
                                           timeout=timeout)
        except jwt.PyJWKClientError as exc:
            raise ConfigError(f"JWKS URL {url!r}: {exc}") from None
        self.url = url
        self.cooldown = cooldown
        # the refresh on an unknown kid is rate-limited here rather than by PyJWT
        # (whose own cooldown exists only in recent versions): same rule everywhere
        self._last_refresh = -float("inf")
        self._lock = threading.Lock()

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            cache = self._client.jwk_set_cache
            if cache is None or cache.get() is None:
                self._last_refresh = now  # this call fetches: it counts as a refresh
            keys = self._client.get_signing_keys()  # cached for ``lifespan`` s
            found = next((k for k in keys if k.key_id == kid), None)
            if found is None and now - self._last_refresh >= self.cooldown:
                self._last_refresh = now
                keys = self._client.get_signing_keys(refresh=True)  # a rotation?
                found = next((k for k in keys if k.key_id == kid), None)
            if found is None:
                raise jwt.PyJWKClientError(f"no key {kid!r}")
            return found

    def key_for(self, token: str) -> tuple[object, str]:
        """The public key and algorithm for ``token``'s ``kid`` (blocking: may fetch)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no 'kid' header: which JWKS key signed it?")
        try:
            jwk = self._signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError(f"cannot fetch the signing keys: {exc}") from None
        except jwt.PyJWKClientError:
            raise AuthError(f"token key id {kid[:64]!r} is not in the JWKS") from None
        algorithm = jwk.algorithm_name
        if algorithm not in ASYMMETRIC:
            raise AuthError(f"JWKS key {kid[:64]!r} is for {algorithm}, not one of "
                            f"{', '.join(ASYMMETRIC)}")
        return jwk.key, algorithm
