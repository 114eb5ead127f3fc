"""Tokens, without sockets."""

from __future__ import annotations

import time

import jwt
import pytest

from wskit.exceptions import AuthError, ConfigError
from wskit.security import tokens as auth

S = "x" * 64


def test_round_trip() -> None:
    assert auth.verify_token(auth.issue_token("alice", S, ttl=60), S) == "alice"


@pytest.mark.parametrize("token, words", [
    (None, "missing token"),
    ("", "missing token"),
    ("not.a.jwt", "invalid token"),
    (jwt.encode({"sub": "a", "exp": int(time.time()) - 5}, S, algorithm="HS256"), "expired"),
    (jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, "y" * 64, algorithm="HS256"),
     "signature"),
    (jwt.encode({"sub": "a"}, S, algorithm="HS256"), "'exp'"),
    (jwt.encode({"exp": int(time.time()) + 60}, S, algorithm="HS256"), "'sub'"),
    # the "alg": "none" attack: an unsigned token must never pass
    (jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none"), "invalid"),
    # a token signed with another algorithm than the pinned one
    (jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, S, algorithm="HS512"), "invalid"),
], ids=["none", "empty", "garbage", "expired", "wrong-key", "no-exp", "no-sub", "alg-none",
        "hs512"])  # stable ids: the tokens hold the time, and pytest-xdist's workers must agree
def test_bad_tokens_say_why(token: str | None, words: str) -> None:
    with pytest.raises(AuthError, match=words):
        auth.verify_token(token, S)


def test_secret_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    given, env = "given-" + "g" * 32, "from-env-" + "e" * 32
    assert auth.resolve_secret(given) == given
    monkeypatch.setenv("WSKIT_SECRET", env)
    assert auth.resolve_secret() == env
    monkeypatch.delenv("WSKIT_SECRET")
    monkeypatch.setattr(auth, "_warned", False)
    with pytest.warns(auth.DevSecretWarning, match="development secret"):
        assert auth.resolve_secret() == auth.DEV_SECRET


@pytest.mark.parametrize("secret", ["", "a", "x" * 31])
def test_empty_or_short_secrets_are_refused(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """'' never falls back to the development secret; under 32 bytes is too weak for HS256."""
    monkeypatch.delenv("WSKIT_SECRET", raising=False)
    with pytest.raises(ConfigError, match="empty" if not secret else "32"):
        auth.resolve_secret(secret)
    monkeypatch.setenv("WSKIT_SECRET", secret)
    with pytest.raises(ConfigError, match="WSKIT_SECRET"):
        auth.resolve_secret()


def test_32_bytes_is_enough() -> None:
    assert auth.resolve_secret("x" * 32) == "x" * 32
