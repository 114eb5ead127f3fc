"""Tokens from an identity provider: RS256/ES256 keys served as a JWKS.

A real HTTP server on 127.0.0.1 (port 0) serves the key set; keys are made with
``cryptography``; tokens are signed the way Keycloak or Auth0 sign them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import wskit
from wskit.core.protocol import CloseCode
from wskit.exceptions import AuthError, ConnectionClosed
from wskit.security.jwks import JwksKeys
from wskit.security.tokens import TokenVerifier

ISS, AUD = "https://idp.example/realms/wskit", "wskit-chat"


class Key:
    """A private key, its ``kid`` and the public JWK a provider would publish."""

    def __init__(self, kind: str, kid: str) -> None:
        self.kid = kid
        if kind == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.alg = kind
        self.jwk.update(kid=kid, use="sig", alg=kind)

    def sign(self, sub: str = "alice", ttl: float = 300, *, kid: str | None = None,
             **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iat": now, "exp": now + int(ttl), "iss": ISS, "aud": AUD,
                   **claims}
        return jwt.encode(payload, self.private, algorithm=self.alg,
                          headers={"kid": kid or self.kid})


class Jwks:
    """A JWKS endpoint on 127.0.0.1 in a thread; ``keys`` may change (rotation)."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self.fetches = 0
        self.delay = 0.0  # a slow provider
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                jwks.fetches += 1
                time.sleep(jwks.delay)  # the provider's thread, not the test's loop
                body = json.dumps({"keys": [k.jwk for k in jwks.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/certs"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> Jwks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key("ES256", "ec-1")


@pytest.fixture
def idp(rsa_key: Key, ec_key: Key) -> Iterator[Jwks]:
    with Jwks([rsa_key, ec_key]) as server:
        yield server


def verifier(idp: Jwks, **kwargs: Any) -> TokenVerifier:
    kwargs.setdefault("audience", AUD)
    kwargs.setdefault("issuer", ISS)
    return TokenVerifier(jwks=JwksKeys(idp.url, cooldown=0), **kwargs)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_tokens_signed_by_a_published_key_pass(idp: Jwks, rsa_key: Key, ec_key: Key,
                                               kind: str) -> None:
    key = rsa_key if kind == "rsa" else ec_key
    claims = verifier(idp).decode(key.sign("alice"))
    assert claims["sub"] == "alice" and claims["aud"] == AUD


def test_the_key_set_is_cached(idp: Jwks, rsa_key: Key) -> None:
    v = verifier(idp)
    for user in ("a", "b", "c"):
        assert v.verify(rsa_key.sign(user)) == user
    assert idp.fetches == 1


def test_an_unknown_kid_refetches_once_then_is_refused(idp: Jwks, rsa_key: Key) -> None:
    v = verifier(idp)
    assert v.verify(rsa_key.sign()) == "alice"
    rotated = Key("RS256", "rsa-2")
    idp.keys.append(rotated)  # the provider rotates: a new kid, fetched on first sight
    assert v.verify(rotated.sign("bob")) == "bob"
    assert idp.fetches == 2
    with pytest.raises(AuthError, match="not in the JWKS"):
        v.verify(rsa_key.sign(kid="made-up"))


def test_the_refetch_on_an_unknown_kid_is_rate_limited(idp: Jwks, rsa_key: Key) -> None:
    v = TokenVerifier(jwks=JwksKeys(idp.url, cooldown=30), audience=AUD, issuer=ISS)
    v.verify(rsa_key.sign())
    for n in range(5):  # made-up kids cannot make wskit hammer the provider
        with pytest.raises(AuthError, match="not in the JWKS"):
            v.verify(rsa_key.sign(kid=f"junk-{n}"))
    assert idp.fetches == 1


def hs256(sub: str = "alice") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 60, "iss": ISS, "aud": AUD},
                      "s" * 64, algorithm="HS256", headers={"kid": "rsa-1"})


@pytest.mark.parametrize("make, words", [
    (lambda k: Key("RS256", "rsa-1").sign(), "signature"),  # same kid, another private key
    (lambda k: k.sign(aud="another-app"), "audience"),
    (lambda k: k.sign(iss="https://evil.example"), "issuer"),
    (lambda k: k.sign(kid="nobody"), "not in the JWKS"),
    (lambda k: k.sign(ttl=-30), "expired"),
    (lambda k: k.sign(ttl=7 * 24 * 3600), "lifetime"),
    (lambda k: k.sign(sub="\u202eecila"), "sub"),
    (lambda k: hs256(), "invalid"),  # HS256 with the kid of an RSA key: never accepted
    (lambda k: jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none",
                          headers={"kid": "rsa-1"}), "invalid"),
], ids=["wrong-key", "aud", "iss", "kid", "expired", "lifetime", "bidi-sub", "hs256", "none"])
def test_wrong_tokens_are_refused(idp: Jwks, rsa_key: Key, make: Any, words: str) -> None:
    with pytest.raises(AuthError, match=words):
        verifier(idp, max_lifetime=3600).decode(make(rsa_key))


def test_max_lifetime_requires_iat(idp: Jwks, rsa_key: Key) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "a", "exp": now + 60, "iss": ISS, "aud": AUD}, rsa_key.private,
                       algorithm="RS256", headers={"kid": rsa_key.kid})
    assert verifier(idp).verify(token) == "a"  # no maximum: no iat needed
    with pytest.raises(AuthError, match="'iat'"):
        verifier(idp, max_lifetime=3600).verify(token)


def test_max_lifetime_applies_to_hs256_too() -> None:
    secret = "h" * 40
    v = TokenVerifier(secret, max_lifetime=600)
    assert v.verify(wskit.issue_token("alice", secret, ttl=600)) == "alice"
    with pytest.raises(AuthError, match="lifetime"):
        v.verify(wskit.issue_token("alice", secret, ttl=601))
    with pytest.raises(AuthError, match="lifetime"):  # the issue's year-9999 token
        v.verify(jwt.encode({"sub": "a", "iat": int(time.time()), "exp": 253402300799},
                            secret, algorithm="HS256"))


def test_an_unreachable_jwks_refuses_with_a_reason(rsa_key: Key) -> None:
    with Jwks([]) as gone:
        url = gone.url
    v = TokenVerifier(jwks=JwksKeys(url, timeout=2), audience=AUD, issuer=ISS)
    with pytest.raises(AuthError, match="cannot fetch"):
        v.verify(rsa_key.sign())


def test_a_jwks_url_must_be_http() -> None:
    with pytest.raises(wskit.ConfigError, match="JWKS URL"):
        JwksKeys("file:///etc/passwd")


async def test_through_a_real_connection(start, framework, idp: Jwks, rsa_key: Key,
                                         ec_key: Key) -> None:
    """Both frameworks: the handshake's key lookup runs off the loop, and a refusal is 4001."""
    srv = await start(framework, jwks_url=idp.url, audience=AUD, issuer=ISS,
                      max_token_lifetime=3600)
    for key, user in ((rsa_key, "alice"), (ec_key, "bob")):
        async with wskit.connect(srv.url, token=key.sign(user)) as client:
            assert client.welcome["userId"] == user
    for token, words in ((rsa_key.sign(aud="other"), "audience"),
                         (Key("ES256", "ec-1").sign(), "signature"),
                         (rsa_key.sign(kid="nope"), "not in the JWKS"),
                         (rsa_key.sign(ttl=86400), "lifetime"),
                         (wskit.issue_token("eve"), "kid")):  # HS256: off with a JWKS
        client = wskit.Client(srv.url, token=token)
        with pytest.raises(ConnectionClosed) as info:
            await client.connect()
        await client.close()
        assert info.value.code == CloseCode.UNAUTHORIZED == 4001
        assert words in info.value.reason


async def test_a_slow_jwks_does_not_stall_the_loop(start, idp: Jwks, rsa_key: Key) -> None:
    """The fetch is blocking urllib: it runs in a thread, so the loop keeps turning."""
    srv = await start("aiohttp", jwks_url=idp.url, audience=AUD, issuer=ISS)
    idp.delay = 1.0
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    try:
        async with wskit.connect(srv.url, token=rsa_key.sign("alice")) as client:
            assert client.welcome["userId"] == "alice"
    finally:
        done.set()
        await task
    assert idp.fetches == 1
    assert max(gaps) < 0.6, f"the loop stalled for {max(gaps):.2f} s during the JWKS fetch"
