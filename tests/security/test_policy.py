"""Authorization policies, without a server (wskit.security.policy)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wskit.exceptions import ConfigError
from wskit.security import policy as p
from wskit.security.tokens import issue_token, verify_token

S = "x" * 64

EVE = {"sub": "eve", "rooms": {"lobby": "rw", "team-*": "r", "news": "r"}}


@pytest.mark.parametrize("action, target, allowed", [
    ("join", "lobby", True), ("post", "lobby", True), ("history", "lobby", True),
    ("presence", "lobby", True),
    ("join", "team-red", True), ("history", "team-red", True), ("presence", "team-red", True),
    ("post", "team-red", False),  # "r": read, not write
    ("join", "alice-private", False), ("history", "alice-private", False),
    ("presence", "alice-private", False), ("post", "alice-private", False),
    ("join", "Lobby", False),  # patterns are case-sensitive: one room, one id
    ("join", "team", False), ("join", "lobby2", False),
    ("direct", "alice", False),  # no "direct" claim
    ("subscribe", "lobby", False),  # an unknown action is refused
])
def test_claims_policy(action: str, target: str, allowed: bool) -> None:
    assert p.claims_policy("eve", EVE, action, target) is allowed


def test_strongest_grant_wins() -> None:
    claims = {"rooms": {"team-*": "r", "team-red": "rw"}}
    assert p.room_mode(claims, "team-red") == "rw"
    assert p.room_mode(claims, "team-blue") == "r"
    assert p.room_mode(claims, "lobby") is None


@pytest.mark.parametrize("rooms", [None, "lobby", ["lobby"], {"lobby": "w"}, {"lobby": True},
                                   {"lobby": "RW"}, {"": "rw"}, 7])
def test_malformed_grants_grant_nothing(rooms: object) -> None:
    claims = {"rooms": rooms}
    for action in ("join", "post", "history", "presence"):
        assert not p.claims_policy("eve", claims, action, "lobby")


def test_direct_claim_must_be_true() -> None:
    for value in (1, "true", "yes", [True]):
        assert not p.claims_policy("eve", {"direct": value}, "direct", "bob")
    assert p.claims_policy("eve", {"direct": True}, "direct", "bob")


async def test_claims_policy_asks_the_server_about_shared_rooms() -> None:
    asked: list[tuple[str, str]] = []

    async def shares(user: str, other: str) -> bool:
        asked.append((user, other))
        return other == "alice"

    policy = p.ClaimsPolicy(shares)
    assert await p.decide(policy, "eve", EVE, "direct", "alice")
    assert not await p.decide(policy, "eve", EVE, "direct", "bob")
    assert await p.decide(policy, "eve", EVE, "join", "lobby")  # no question needed
    assert asked == [("eve", "alice"), ("eve", "bob")]
    assert not await p.decide(p.ClaimsPolicy(None), "eve", EVE, "direct", "alice")


async def test_decide_takes_sync_and_async_and_fails_closed(caplog) -> None:
    async def slow(user, claims, action, target):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        return target == "ok"

    def broken(user, claims, action, target):  # type: ignore[no-untyped-def]
        raise RuntimeError("policy bug")

    assert await p.decide(slow, "u", {}, "join", "ok")
    assert not await p.decide(slow, "u", {}, "join", "other")
    with caplog.at_level(logging.ERROR, "wskit.policy"):
        assert not await p.decide(broken, "u", {}, "join", "ok")
    assert "policy failed" in caplog.text
    # only True grants: a truthy answer that is not True refuses
    for verdict in (1, "yes", [1], object()):
        assert not await p.decide(lambda *a, v=verdict: v, "u", {}, "join", "r")
    assert await p.decide(p.open_policy, "u", {}, "post", "anything")


def test_resolve() -> None:
    assert p.resolve(None) is None and p.resolve("open") is None
    assert p.resolve(p.open_policy) is None
    assert isinstance(p.resolve("claims"), p.ClaimsPolicy)
    fn = p.claims_policy
    assert p.resolve(fn) is fn
    with pytest.raises(ConfigError, match="unknown authorization policy"):
        p.resolve("closed")
    with pytest.raises(ConfigError):
        p.resolve(42)  # type: ignore[arg-type]


def test_token_claims_of_a_verified_token() -> None:
    token = issue_token("eve", S, rooms={"lobby": "r"}, direct=True)
    assert verify_token(token, S) == "eve"
    claims = p.token_claims(token)
    assert claims["rooms"] == {"lobby": "r"} and claims["direct"] is True
    assert claims["sub"] == "eve" and isinstance(claims["exp"], int)
