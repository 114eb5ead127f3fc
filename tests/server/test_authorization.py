"""Who may do what, for how long, and how much (issue 24): policies, token lifetime,
revocation and bounds. Socket-free where the rule is the server's (wskit.testing's
Peer), then the same probes over real sockets, on both frameworks and two instances."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import wskit
from wskit import CloseCode, ServerError
from wskit.core import protocol
from wskit.core.reconnect import should_reconnect
from wskit.runner.serve import is_loopback
from wskit.security.policy import ClaimsPolicy
from wskit.testing import MemoryTransport, Peer

ALICE_ROOMS = {"alice-private": "rw", "lobby": "rw"}
EVE_ROOMS = {"lobby": "rw", "news": "r"}


def token(server: wskit.ChatServer, user: str, ttl: float = 3600, **claims: Any) -> str:
    return wskit.issue_token(user, server.secret, ttl, **claims)


async def peer(server: wskit.ChatServer, user: str, **claims: Any) -> Peer:
    ttl = claims.pop("ttl", 3600)
    return await Peer(server, user, token(server, user, ttl, **claims)).connect()


def forbidden(reply: dict[str, Any]) -> bool:
    return reply.get("type") == "error" and reply.get("code") == "forbidden"


# -- the claims policy, socket-free -------------------------------------------------


async def test_an_attacker_with_a_valid_token_gets_nothing_it_was_not_granted(make_server):
    server = await make_server(authorize="claims", presence_events=True)
    alice = await peer(server, "alice", rooms=ALICE_ROOMS)
    assert (await alice.request({"type": "join", "roomId": "alice-private"}))["type"] == "joined"
    assert (await alice.request({"type": "message", "roomId": "alice-private",
                                 "content": "my secret"}))["type"] == "sent"
    eve = await peer(server, "eve", rooms=EVE_ROOMS)
    probes = [
        {"type": "join", "roomId": "alice-private"},
        {"type": "history", "roomId": "alice-private", "limit": 1000},
        {"type": "presence", "roomId": "alice-private"},
        {"type": "message", "roomId": "alice-private", "content": "hi"},
        {"type": "direct", "to": "alice", "content": "psst"},  # no room shared, no "direct"
    ]
    for probe in probes:
        reply = await eve.request(probe)
        assert forbidden(reply), (probe, reply)
        assert "my secret" not in str(reply) and "alice'," not in str(reply)
    assert not server.hub.is_member(eve.conn, "alice-private")
    assert alice.unread() == []  # no direct, no message, no presence event reached alice


async def test_a_refusal_does_not_tell_whether_the_room_or_user_exists(make_server):
    server = await make_server(authorize="claims")
    alice = await peer(server, "alice", rooms=ALICE_ROOMS)
    await alice.request({"type": "join", "roomId": "alice-private"})
    eve = await peer(server, "eve", rooms=EVE_ROOMS)
    for kind in ("join", "history", "presence"):
        there = await eve.request({"type": kind, "roomId": "alice-private"})
        nowhere = await eve.request({"type": kind, "roomId": "no-such-room"})
        assert there["message"].replace("alice-private", "R") == \
            nowhere["message"].replace("no-such-room", "R")
        assert there.keys() == nowhere.keys()
    online = await eve.request({"type": "direct", "to": "alice", "content": "x"})
    offline = await eve.request({"type": "direct", "to": "zed", "content": "x"})
    assert forbidden(online) and forbidden(offline)
    assert online["message"].replace("alice", "U") == offline["message"].replace("zed", "U")


async def test_a_read_grant_reads_but_does_not_post(make_server):
    server = await make_server(authorize="claims")
    alice = await peer(server, "alice", rooms={"news": "rw"})
    await alice.request({"type": "join", "roomId": "news"})
    await alice.request({"type": "message", "roomId": "news", "content": "headline"})
    eve = await peer(server, "eve", rooms=EVE_ROOMS)
    assert (await eve.request({"type": "join", "roomId": "news"}))["type"] == "joined"
    history = await eve.request({"type": "history", "roomId": "news"})
    assert [m["content"] for m in history["messages"]] == ["headline"]
    assert (await eve.request({"type": "presence", "roomId": "news"}))["users"] == [
        "alice", "eve"]
    assert forbidden(await eve.request({"type": "message", "roomId": "news", "content": "x"}))
    assert (await eve.request({"type": "leave", "roomId": "news"}))["type"] == "left"


async def test_patterns_grant_families_of_rooms(make_server):
    server = await make_server(authorize="claims")
    eve = await peer(server, "eve", rooms={"team-*": "rw"})
    assert (await eve.request({"type": "join", "roomId": "team-red"}))["type"] == "joined"
    assert (await eve.request({"type": "message", "roomId": "team-red",
                               "content": "x"}))["type"] == "sent"
    assert forbidden(await eve.request({"type": "join", "roomId": "teams"}))


async def test_no_rooms_claim_means_no_access(make_server):
    server = await make_server(authorize="claims")
    eve = await peer(server, "eve")
    assert forbidden(await eve.request({"type": "join", "roomId": "lobby"}))
    assert (await eve.request({"type": "ping"}))["type"] == "pong"  # not a policy matter


async def test_directs_between_users_who_share_a_room(make_server):
    server = await make_server(authorize="claims")
    alice = await peer(server, "alice", rooms=ALICE_ROOMS)
    eve = await peer(server, "eve", rooms=EVE_ROOMS)
    assert forbidden(await eve.request({"type": "direct", "to": "alice", "content": "x"}))
    await alice.request({"type": "join", "roomId": "lobby"})
    await eve.request({"type": "join", "roomId": "lobby"})
    assert (await eve.request({"type": "direct", "to": "alice", "content": "hi"}))["type"] == "sent"
    got = await alice.recv()
    assert got["type"] == "direct" and got["content"] == "hi"


async def test_the_direct_claim_allows_anyone_and_never_tells_who_is_online(make_server):
    server = await make_server(authorize="claims")
    await peer(server, "alice")
    eve = await peer(server, "eve", direct=True)
    online = await eve.request({"type": "direct", "to": "alice", "content": "x"})
    offline = await eve.request({"type": "direct", "to": "nobody", "content": "x"})
    assert online["type"] == offline["type"] == "sent"
    assert online.keys() == offline.keys()


async def test_open_keeps_todays_behaviour(make_server):
    server = await make_server()  # a ChatServer is open unless told otherwise
    eve = await Peer(server, "eve").connect()
    assert (await eve.request({"type": "join", "roomId": "alice-private"}))["type"] == "joined"
    reply = await eve.request({"type": "direct", "to": "nobody", "content": "x"})
    assert reply["code"] == "user_offline"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_python_policy_is_asked_about_every_action(make_server, kind):
    asked: list[tuple[str, str, str, Any]] = []

    def decide(user: str, claims: Any, action: str, target: str) -> bool:
        asked.append((user, action, target, claims.get("team")))
        return target != "vault"

    async def decide_async(user: str, claims: Any, action: str, target: str) -> bool:
        await asyncio.sleep(0)
        return decide(user, claims, action, target)

    server = await make_server(authorize=decide if kind == "sync" else decide_async)
    bob = await peer(server, "bob")
    eve = await peer(server, "eve", team="red")
    assert (await eve.request({"type": "join", "roomId": "lobby"}))["type"] == "joined"
    await eve.request({"type": "message", "roomId": "lobby", "content": "x"})
    await eve.request({"type": "history", "roomId": "lobby"})
    await eve.request({"type": "presence", "roomId": "lobby"})
    await eve.request({"type": "direct", "to": "bob", "content": "x"})
    assert forbidden(await eve.request({"type": "join", "roomId": "vault"}))
    assert asked == [("eve", "join", "lobby", "red"), ("eve", "post", "lobby", "red"),
                     ("eve", "history", "lobby", "red"), ("eve", "presence", "lobby", "red"),
                     ("eve", "direct", "bob", "red"), ("eve", "join", "vault", "red")]
    assert (await bob.recv())["type"] == "direct"


async def test_a_failing_policy_refuses(make_server):
    def broken(user: str, claims: Any, action: str, target: str) -> bool:
        raise RuntimeError("bug")

    server = await make_server(authorize=broken)
    eve = await peer(server, "eve")
    assert forbidden(await eve.request({"type": "join", "roomId": "lobby"}))


async def test_replies_keep_the_order_of_requests(make_server):
    server = await make_server(authorize="claims", backplane="memory://order-"
                               + uuid.uuid4().hex[:6])
    eve = await peer(server, "eve", rooms={"lobby": "rw", "news": "r"})
    await eve.request({"type": "join", "roomId": "lobby"})
    await eve.request({"type": "join", "roomId": "news"})
    for i in range(5):
        eve.send({"type": "message", "roomId": "lobby", "content": str(i), "ref": f"a{i}"})
        eve.send({"type": "message", "roomId": "news", "content": str(i), "ref": f"b{i}"})
    replies = [await eve.recv() for _ in range(10)]
    assert [r["ref"] for r in replies] == [f"{x}{i}" for i in range(5) for x in "ab"]
    assert [r["type"] for r in replies] == ["sent", "error"] * 5


# -- token lifetime -----------------------------------------------------------------


async def test_welcome_carries_expires_at(make_server):
    server = await make_server()
    tok = token(server, "alice", ttl=600)
    p = Peer(server, "alice", tok).start()
    welcome = await p.recv()
    assert welcome["expiresAt"] == wskit.security.policy.token_claims(tok)["exp"]


async def test_a_token_expiring_on_a_live_connection_closes_it_with_4001(make_server):
    server = await make_server(authorize="claims")
    tok = token(server, "alice", ttl=2, rooms={"lobby": "rw"})
    exp = wskit.security.policy.token_claims(tok)["exp"]
    p = Peer(server, "alice", tok)
    await p.connect()
    await asyncio.wait_for(p.transport.closed.wait(), timeout=exp - time.time() + 2)
    closed_at = time.time()
    assert p.transport.close_code == CloseCode.UNAUTHORIZED
    assert p.transport.close_reason == "token expired"
    assert exp - 0.05 <= closed_at <= exp + 1  # (the loop's timer, against the wall clock)


async def test_refreshed_every_second_it_lives_on(make_server):
    server = await make_server(authorize="claims")
    grant = {"rooms": {"lobby": "rw"}}
    first = token(server, "alice", ttl=2, **grant)
    p = Peer(server, "alice", first)
    await p.connect()
    await p.request({"type": "join", "roomId": "lobby"})
    started = time.time()
    expires = wskit.security.policy.token_claims(first)["exp"]
    while time.time() - started < 4.5:
        await asyncio.sleep(1)  # the pace of the refreshes under test, not synchronisation
        reply = await p.request({"type": "refresh", "token": token(server, "alice", 2, **grant)})
        assert reply["type"] == "refreshed", reply
        assert reply["expiresAt"] >= expires
        expires = reply["expiresAt"]
    assert time.time() - started >= 4.5 > (wskit.security.policy.token_claims(first)["exp"]
                                           - started)
    assert (await p.request({"type": "message", "roomId": "lobby",
                             "content": "still here"}))["type"] == "sent"
    assert not p.transport.closed.is_set()
    # and once the refreshes stop, it expires
    await asyncio.wait_for(p.transport.closed.wait(), timeout=expires - time.time() + 2)
    assert p.transport.close_code == CloseCode.UNAUTHORIZED


async def test_a_refused_refresh_changes_nothing(make_server):
    server = await make_server(authorize="claims")
    tok = token(server, "alice", ttl=600, rooms={"lobby": "rw"})
    p = await Peer(server, "alice", tok).connect()
    bad = [
        token(server, "mallory", ttl=600, rooms={"*": "rw"}),  # another user
        wskit.issue_token("alice", "another-secret-0123456789abcdef0123", 600),
        "not.a.jwt",
    ]
    for t in bad:
        reply = await p.request({"type": "refresh", "token": t})
        assert reply["type"] == "error" and reply["code"] == "invalid_token", reply
    assert p.conn.user == "alice"
    assert server.authority.expires_at(p.conn) == wskit.security.policy.token_claims(tok)["exp"]
    assert forbidden(await p.request({"type": "join", "roomId": "vault"}))
    reply = await p.request({"type": "refresh", "token": ""})
    assert reply["code"] == "invalid_value"


async def test_a_refresh_brings_new_grants(make_server):
    server = await make_server(authorize="claims")
    p = await peer(server, "alice", rooms={"lobby": "r"})
    await p.request({"type": "join", "roomId": "lobby"})
    assert forbidden(await p.request({"type": "message", "roomId": "lobby", "content": "x"}))
    reply = await p.request({"type": "refresh",
                             "token": token(server, "alice", rooms={"lobby": "rw"})})
    assert reply["type"] == "refreshed"
    assert (await p.request({"type": "message", "roomId": "lobby",
                             "content": "x"}))["type"] == "sent"


async def test_a_refresh_with_fewer_grants_leaves_those_rooms(make_server):
    server = await make_server(authorize="claims")
    p = await peer(server, "alice", rooms={"lobby": "rw", "team-*": "rw"})
    for room in ("lobby", "team-red", "team-blue"):
        await p.request({"type": "join", "roomId": room})
    bob = await peer(server, "bob", rooms={"team-red": "rw"})
    await bob.request({"type": "join", "roomId": "team-red"})
    reply = await p.request({"type": "refresh",
                             "token": token(server, "alice", rooms={"team-blue": "r"})})
    assert reply["type"] == "refreshed"
    left = [await p.recv(), await p.recv()]
    assert left == [{"type": "left", "roomId": "lobby"}, {"type": "left", "roomId": "team-red"}]
    assert server.hub.rooms_of(p.conn) == ["team-blue"]
    await bob.request({"type": "message", "roomId": "team-red", "content": "not for alice"})
    assert (await p.request({"type": "ping"}))["type"] == "pong"
    assert p.unread() == []


async def test_token_grace_delays_the_expiry_close(make_server):
    server = await make_server(token_grace=0.5)
    tok = token(server, "alice", ttl=1)
    exp = wskit.security.policy.token_claims(tok)["exp"]
    p = await Peer(server, "alice", tok).connect()
    await asyncio.wait_for(p.transport.closed.wait(), timeout=exp - time.time() + 2)
    assert exp + 0.45 <= time.time() <= exp + 1.5
    assert p.transport.close_code == CloseCode.UNAUTHORIZED


# -- revocation ---------------------------------------------------------------------


async def test_revoke_closes_the_users_connections_on_every_instance(make_server):
    bus = f"memory://revoke-{uuid.uuid4().hex[:6]}"
    a, b = await make_server(backplane=bus), await make_server(backplane=bus)
    eve_a, eve_b = await Peer(a, "eve").connect(), await Peer(b, "eve").connect()
    bob_b = await Peer(b, "bob").connect()
    started = asyncio.get_running_loop().time()
    assert await a.revoke("eve") == 1
    for p in (eve_a, eve_b):
        await asyncio.wait_for(p.transport.closed.wait(), 1.0)
        assert p.transport.close_code == CloseCode.UNAUTHORIZED
        assert p.transport.close_reason == "token revoked"
    assert asyncio.get_running_loop().time() - started < 1.0
    assert (await bob_b.request({"type": "ping"}))["type"] == "pong"


# -- bounds -------------------------------------------------------------------------


async def test_200_joins_give_128_joined_then_too_many_rooms(make_server):
    server = await make_server()
    p = await Peer(server, "alice").connect()
    for i in range(200):
        p.send({"type": "join", "roomId": f"room-{i}", "ref": i})
    replies = [await p.recv() for _ in range(200)]
    kinds = [r.get("code", r["type"]) for r in replies]
    assert kinds == ["joined"] * 128 + ["too_many_rooms"] * 72
    assert len(server.hub.rooms_of(p.conn)) == 128
    # rejoining a room it is in is not a new room; leaving one makes space
    assert (await p.request({"type": "join", "roomId": "room-0"}))["type"] == "joined"
    await p.request({"type": "leave", "roomId": "room-0"})
    assert (await p.request({"type": "join", "roomId": "room-150"}))["type"] == "joined"


async def test_the_rooms_bound_is_a_setting(make_server):
    server = await make_server(max_rooms_per_connection=2)
    p = await Peer(server, "alice").connect()
    for room in ("a", "b"):
        await p.request({"type": "join", "roomId": room})
    assert (await p.request({"type": "join", "roomId": "c"}))["code"] == "too_many_rooms"
    unbounded = await make_server(max_rooms_per_connection=None)
    q = await Peer(unbounded, "bob").connect()
    for i in range(130):
        q.send({"type": "join", "roomId": f"r{i}", "ref": i})
    assert all([(await q.recv())["type"] == "joined" for _ in range(130)])


async def test_connections_per_user_are_bounded_with_4009(make_server):
    server = await make_server(max_connections_per_user=2)
    first, second = await Peer(server, "alice").connect(), await Peer(server, "alice").connect()
    third = Peer(server, "alice").start()
    await third.finished()
    assert third.transport.close_code == CloseCode.TOO_MANY_CONNECTIONS
    assert "at most 2" in third.transport.close_reason
    assert (await Peer(server, "bob").connect()).user == "bob"  # other users unaffected
    await first.leave()
    again = await Peer(server, "alice").connect()  # a place came free
    assert again.conn.user == second.conn.user == "alice"


async def test_connections_per_ip_are_bounded_with_4009(make_server):
    server = await make_server(max_connections_per_ip=2)

    async def open_from(ip: str, user: str) -> tuple[MemoryTransport, asyncio.Task[None]]:
        transport = MemoryTransport()
        task = asyncio.ensure_future(server.serve_connection(
            transport, token(server, user), remote=ip))
        await transport.wait_sent(1)
        return transport, task

    held = [await open_from("10.0.0.1", u) for u in ("a", "b")]
    over, task = await open_from("10.0.0.1", "c")
    await task
    assert over.close_code == CloseCode.TOO_MANY_CONNECTIONS
    elsewhere, other = await open_from("10.0.0.2", "c")
    assert '"welcome"' in elsewhere.sent[0]
    for transport, t in [*held, (elsewhere, other)]:
        transport.incoming.put_nowait(None)
        await t
    assert server.authority._per_ip == {}  # every count given back


def test_too_many_connections_is_final() -> None:
    assert not should_reconnect(CloseCode.TOO_MANY_CONNECTIONS, fresh_token=True)
    assert should_reconnect(CloseCode.UNAUTHORIZED, fresh_token=True)


# -- room ids -----------------------------------------------------------------------


@pytest.mark.parametrize("room", ["\u217cobby", "\u2113obby", "ｌｏｂｂｙ"])
def test_room_ids_are_nfkc_normalised(room: str) -> None:
    request = protocol.parse(f'{{"type": "join", "roomId": "{room}"}}')
    assert request == protocol.Join("lobby")


def test_unicode_letters_stay_and_lookalikes_stay_distinct() -> None:
    assert protocol.parse('{"type": "join", "roomId": "雑談"}') == protocol.Join("雑談")
    cyrillic = protocol.parse('{"type": "join", "roomId": "\u0430lice"}')
    assert isinstance(cyrillic, protocol.Join) and cyrillic.room != "alice"


async def test_a_lookalike_room_id_is_the_room(make_server):
    server = await make_server(authorize="claims")
    alice = await peer(server, "alice", rooms={"lobby": "rw"})
    eve = await peer(server, "eve", rooms={"lobby": "rw"})
    await alice.request({"type": "join", "roomId": "lobby"})
    joined = await eve.request({"type": "join", "roomId": "\u2113obby"})
    assert joined["roomId"] == "lobby"
    await eve.request({"type": "message", "roomId": "\u217cobby", "content": "same room"})
    assert (await alice.recv())["content"] == "same room"


# -- defaults -----------------------------------------------------------------------


def test_loopback() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.5.0.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.1", "example.com")))


async def test_serve_is_open_on_loopback_and_claims_elsewhere(start):
    here = await start("aiohttp")
    assert here.server.authority.open
    anywhere = await start("aiohttp", host="0.0.0.0")
    assert isinstance(anywhere.server.authority.policy, ClaimsPolicy)
    asked = await start("aiohttp", host="0.0.0.0", authorize="open")
    assert asked.server.authority.open
    by_setting = await start("aiohttp", authorize=None, settings=wskit.Settings(authorize="claims"))
    assert isinstance(by_setting.server.authority.policy, ClaimsPolicy)


async def test_a_ready_server_off_loopback_must_name_its_policy() -> None:
    ready = wskit.ChatServer(backplane="none", secret="s" * 32)  # no policy named
    with pytest.raises(wskit.ConfigError, match="authorize=.claims."):
        await wskit.serve("aiohttp", host="0.0.0.0", port=0, server=ready, name="ready-open")
    assert not ready.started  # refused before anything was bound or started


def test_settings_validate_the_new_fields() -> None:
    for bad in ({"authorize": "closed"}, {"token_grace": -1}, {"max_rooms_per_connection": 0},
                {"max_connections_per_user": 0}, {"max_connections_per_ip": -2}):
        with pytest.raises(ValueError):
            wskit.Settings(**bad)


# -- over sockets: both frameworks, two instances -----------------------------------


async def _probe(client: wskit.Client) -> list[str]:
    codes = []
    for call in (lambda: client.join("alice-private"),
                 lambda: client.request({"type": "history", "roomId": "alice-private"}),
                 lambda: client.presence("alice-private"),
                 lambda: client.send("alice-private", "hi"),
                 lambda: client.direct("alice", "psst"),
                 lambda: client.send("news", "x")):
        with pytest.raises(ServerError) as info:
            await call()
        codes.append(info.value.code)
    return codes


async def test_probe_over_sockets_across_two_instances(start, clients, backplane_url):
    # alice on aiohttp, eve on FastAPI, one backplane: nothing crosses that was not granted
    a = await start("aiohttp", backplane=backplane_url, authorize="claims")
    b = await start("fastapi", backplane=backplane_url, authorize="claims")
    alice = await clients(a, token=a.token("alice", rooms=ALICE_ROOMS))
    await alice.join("alice-private")
    await alice.send("alice-private", "my secret")
    carol = await clients(a, token=a.token("carol", rooms={"news": "rw"}))
    await carol.join("news")
    await carol.send("news", "headline")
    for srv in (b, a):
        eve = await clients(srv, token=srv.token("eve", rooms=EVE_ROOMS))
        assert (await eve.join("news"))["type"] == "joined"
        assert [m["content"] for m in (await eve.request(
            {"type": "history", "roomId": "news"}))["messages"]] == ["headline"]
        assert await _probe(eve) == ["forbidden"] * 6
        await eve.close()
    assert alice.drain() == []


async def test_revoke_reaches_the_other_instance_within_a_second(start, clients, backplane_url):
    a = await start("aiohttp", backplane=backplane_url)
    b = await start("fastapi", backplane=backplane_url)
    eve = await clients(b, user="eve")
    bob = await clients(b, user="bob")
    started = time.monotonic()
    assert await a.server.revoke("eve") == 0  # none here: the bus carries it
    assert await eve.wait_closed(timeout=1.0) == CloseCode.UNAUTHORIZED
    assert time.monotonic() - started < 1.0
    assert eve.close_reason == "token revoked"
    assert (await bob.request({"type": "ping"}))["type"] == "pong"


async def test_expiry_and_client_refresh_on_both_frameworks(start, clients, framework):
    srv = await start(framework, authorize="claims")
    grant = {"rooms": {"lobby": "rw"}}
    plain = await clients(srv, token=srv.token("alice", ttl=2, **grant))
    exp = plain.welcome["expiresAt"]
    assert await plain.wait_closed(timeout=exp - time.time() + 2) == CloseCode.UNAUTHORIZED
    assert time.time() <= exp + 1
    assert plain.close_reason == "token expired"

    refreshing = await clients(srv, token=lambda: srv.token("bob", ttl=2, **grant))
    first = refreshing.welcome["expiresAt"]
    await refreshing.join("lobby")
    while time.time() < first + 2.5:
        await asyncio.sleep(0.25)  # the clock under test: the first token is long dead
        assert not refreshing.closed
    assert refreshing.refresher is not None and refreshing.refresher.refreshes >= 2
    assert (await refreshing.send("lobby", "alive"))["type"] == "sent"


async def test_connection_bounds_over_sockets(start, clients, framework):
    srv = await start(framework, max_connections_per_ip=1)
    await clients(srv, user="alice")
    with pytest.raises(wskit.ConnectionClosed) as info:
        await clients(srv, user="bob")
    assert info.value.code == CloseCode.TOO_MANY_CONNECTIONS
    # the peer's address counts, on both frameworks: a header does not pick another
    with pytest.raises(wskit.ConnectionClosed) as info:
        await clients(srv, user="carol", headers={"X-Forwarded-For": "203.0.113.9"})
    assert info.value.code == CloseCode.TOO_MANY_CONNECTIONS


async def test_200_joins_over_sockets(start, clients, framework):
    srv = await start(framework)
    alice = await clients(srv, user="alice")
    for i in range(200):
        await alice.send_raw({"type": "join", "roomId": f"room-{i}", "ref": i})
    replies = [await alice.receive() for _ in range(200)]
    kinds = [r.get("code", r["type"]) for r in replies]
    assert kinds == ["joined"] * 128 + ["too_many_rooms"] * 72


async def test_a_client_stops_refreshing_once_closed_for_good(start, clients):
    srv = await start("aiohttp")
    alice = await clients(srv, user="alice")
    assert alice.refresher is not None
    task = alice.refresher._task
    await srv.server.revoke("alice")
    await alice.wait_closed()
    assert task is not None
    await asyncio.wait_for(asyncio.shield(task), 2)  # ended by itself, not by close()


# -- the command line ---------------------------------------------------------------


def test_token_command_grants_rooms(capsys: pytest.CaptureFixture[str]) -> None:
    from wskit.cli import main
    from wskit.security.policy import token_claims

    secret = "cli-secret-0123456789abcdef0123456789"
    assert main(["token", "eve", "--secret", secret, "--room", "lobby=rw",
                 "--room", "team-*=r", "--direct"]) == 0
    tok = capsys.readouterr().out.strip().splitlines()[-1]
    assert wskit.verify_token(tok, secret) == "eve"
    claims = token_claims(tok)
    assert claims["rooms"] == {"lobby": "rw", "team-*": "r"} and claims["direct"] is True
    assert main(["token", "eve", "--secret", secret, "--room", "lobby=w"]) == 1
    assert "PATTERN=r" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_serve_authorize_claims_on_the_command_line(framework: str) -> None:
    from processes import first_line, interrupt, spawn

    secret = "cli-secret-0123456789abcdef0123456789"
    proc = await spawn("serve", "--framework", framework, "--port", "0", "--secret", secret,
                       "--redis", "none", "--authorize", "claims",
                       "--max-rooms-per-connection", "2")
    try:
        url = await first_line(proc)
        tok = wskit.issue_token("eve", secret, rooms={"lobby": "rw", "news": "r", "x*": "r"})
        async with wskit.connect(url, token=tok) as eve:
            assert (await eve.join("lobby"))["type"] == "joined"
            assert await _probe(eve) == ["forbidden"] * 6
            assert (await eve.join("news"))["type"] == "joined"
            with pytest.raises(ServerError, match="too_many_rooms"):
                await eve.join("x1")
    finally:
        assert await interrupt(proc) == 0


# -- the client's refresher (wskit.client.refresh) ------------------------------------


def test_refresh_delay() -> None:
    from wskit.client.refresh import LEAD, refresh_delay

    assert refresh_delay(100.0, 102.0) == 1.0  # half-way through a short life
    assert refresh_delay(0.0, 3600.0) == 3600.0 - LEAD  # at most LEAD before the end
    assert refresh_delay(10.0, 9.0) == 0.0  # already over: at once
    assert 0 < refresh_delay(0.0, 0.1) <= 0.1


async def test_a_refused_refresh_leaves_the_expiry_in_place(start, clients, caplog):
    srv = await start("aiohttp")
    issued = [srv.token("alice", ttl=2)]

    def tokens() -> str:  # the first for the connection, then someone else's
        issued.append(srv.token("mallory", ttl=60))
        return issued[0] if len(issued) == 2 else issued[-1]

    alice = await clients(srv, token=tokens)
    exp = alice.welcome["expiresAt"]
    assert await alice.wait_closed(timeout=exp - time.time() + 2) == CloseCode.UNAUTHORIZED
    assert time.time() <= exp + 1
    assert alice.refresher is not None and alice.refresher.refreshes == 0
    assert "token refresh failed" in caplog.text
    assert len(issued) <= 6  # retried with a backoff, not in a loop
