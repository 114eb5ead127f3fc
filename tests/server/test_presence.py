"""Presence across instances (issue 12): the store contract on every backend, the
server specified without sockets, and a SIGKILLed instance vanishing on Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from processes import first_line, interrupt, spawn

from wskit import ChatServer, Client
from wskit.backplane import RedisBackplane
from wskit.server.presence import MemoryPresence
from wskit.testing.memory import GatedBackplane, Peer

pytestmark = pytest.mark.timeout(30)

REDIS_URL = os.environ.get("WSKIT_REDIS_URL")


async def until(condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll an asynchronous condition (expiry is about time) until it holds; the
    seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


# -- the store contract: MemoryPresence, fakeredis and a real Redis -----------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STORES = ["memory", "fakeredis"] + (["redis"] if REDIS_URL else [])


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> Any:
    """(store, key, advance): ``advance(s)`` lets ``s`` seconds pass for the store."""
    if request.param == "memory":
        clock = Clock()

        async def advance_fake(seconds: float) -> None:
            clock.now += seconds

        yield MemoryPresence(clock), "room", advance_fake
        return
    url = f"fakeredis://presence-{uuid.uuid4().hex[:8]}" if request.param == "fakeredis" \
        else REDIS_URL
    bp = RedisBackplane(url)
    await bp.start()
    key = f"t{uuid.uuid4().hex[:10]}:{{room:r}}"

    async def advance_real(seconds: float) -> None:
        await asyncio.sleep(seconds)  # Redis keeps its own clock: real time must pass

    class Store:  # the relay's shape: keys in, like a room
        async def presence_join(self, room: str, *a: Any) -> bool:
            return await bp.presence.presence_join(key, *a)

        async def presence_leave(self, room: str, *a: Any) -> bool:
            return await bp.presence.presence_leave(key, *a)

        async def presence_refresh(self, room: str, *a: Any) -> list[str]:
            return await bp.presence.presence_refresh(key, *a)

        async def presence_list(self, room: str) -> list[str]:
            return await bp.presence.presence_list(key)

    try:
        yield Store(), "room", advance_real
    finally:
        await bp.client.delete(f"{key}:presence", f"{key}:presence:idx")
        await bp.stop()


async def test_first_and_last_entry_across_instances(store) -> None:
    s, room, _ = store
    assert await s.presence_join(room, "alice", "A", 10) is True
    assert await s.presence_join(room, "alice", "B", 10) is False  # a second tab elsewhere
    assert await s.presence_join(room, "bob/x\"y", "B", 10) is True  # any user id
    assert await s.presence_list(room) == ["alice", 'bob/x"y']
    assert await s.presence_leave(room, "alice", "A") is False  # still on B
    assert await s.presence_leave(room, "alice", "B") is True
    assert await s.presence_list(room) == ['bob/x"y']


async def test_first_and_last_agree_with_a_model_for_users_sharing_prefixes(store) -> None:
    """Random joins and leaves, users whose names prefix one another (the Redis
    scripts find one user's entries as a lexicographic range): every answer is
    what a set of (user, instance) pairs says."""
    import random

    s, room, _ = store
    rng = random.Random(1414)
    users = ["al", "alice", "alice2", 'al"x', "al,", "é", "al\\"]
    here: set[tuple[str, str]] = set()
    for _ in range(120):
        user, instance = rng.choice(users), rng.choice("AB")
        if (user, instance) in here and rng.random() < 0.6:
            here.discard((user, instance))
            want = not any(u == user for u, _ in here)
            assert await s.presence_leave(room, user, instance) is want, (user, instance)
        else:
            want = not any(u == user for u, _ in here)
            here.add((user, instance))
            assert await s.presence_join(room, user, instance, 30) is want, (user, instance)
    assert await s.presence_list(room) == sorted({u for u, _ in here})


async def test_entries_not_refreshed_expire_and_are_announced_once(store) -> None:
    s, room, advance = store
    await s.presence_join(room, "alice", "A", 0.4)
    await s.presence_join(room, "carol", "A", 0.4)
    await s.presence_join(room, "bob", "B", 0.4)
    await s.presence_join(room, "carol", "B", 0.4)
    await advance(0.25)
    assert await s.presence_refresh(room, ["bob", "carol"], "B", 0.4) == []
    await advance(0.25)  # A never refreshed: its entries are past their expiry
    assert await s.presence_list(room) == ["bob", "carol"]
    gone = await s.presence_refresh(room, ["bob", "carol"], "B", 0.4)
    assert gone == ["alice"]  # carol is still present through B
    assert await s.presence_refresh(room, ["bob", "carol"], "B", 0.4) == []  # once
    assert await s.presence_join(room, "alice", "C", 0.4) is True


# -- the server, without sockets --------------------------------------------------

async def peer(server: ChatServer, user: str) -> Peer:
    return await Peer(server, user).connect()


async def join(p: Peer, room: str = "r") -> None:
    assert (await p.request({"type": "join", "roomId": room}))["type"] == "joined"


async def who(p: Peer, room: str = "r") -> list[str]:
    reply = await p.request({"type": "presence", "roomId": room, "ref": "who"})
    assert reply["type"] == "presence" and reply["ref"] == "who", reply
    return list(reply["users"])


async def events(p: Peer, count: int) -> list[tuple[str, str]]:
    got = []
    while len(got) < count:
        frame = await p.recv()
        if frame["type"] == "presence" and "event" in frame:
            got.append((frame["event"], frame["userId"]))
    return got


async def test_presence_needs_membership(make_server) -> None:
    server = await make_server()
    alice = await peer(server, "alice")
    reply = await alice.request({"type": "presence", "roomId": "r", "ref": 1})
    assert reply["code"] == "not_joined" and reply["ref"] == 1
    await join(alice)
    assert await who(alice) == ["alice"]


async def test_standalone_presence_and_events(make_server) -> None:
    server = await make_server(presence_events=True)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    await join(alice)
    await join(bob)
    assert await events(alice, 1) == [("join", "bob")]
    assert await who(bob) == ["alice", "bob"]
    await bob.leave()
    assert await events(alice, 1) == [("leave", "bob")]
    assert await who(alice) == ["alice"]


async def test_presence_agrees_across_instances_and_events_follow_users(make_server) -> None:
    bus = f"presence-{uuid.uuid4().hex[:8]}"
    a = await make_server(backplane=GatedBackplane(bus), presence_events=True)
    b = await make_server(backplane=GatedBackplane(bus), presence_events=True)
    alice, bob = await peer(a, "alice"), await peer(b, "bob")
    await join(alice)
    await join(bob)
    assert await events(alice, 1) == [("join", "bob")]
    assert await who(alice) == await who(bob) == ["alice", "bob"]
    # alice opens a second tab on the other instance: not a new arrival
    alice2 = await peer(b, "alice")
    await join(alice2)
    await a.settled()
    await b.settled()
    await alice.leave()  # her first tab closes: she is still there through b
    await a.settled()
    assert await who(bob) == ["alice", "bob"]
    await alice2.request({"type": "leave", "roomId": "r"})  # her last one leaves
    assert await events(bob, 1) == [("leave", "alice")]
    assert await who(bob) == ["bob"]
    assert [f for f in bob.unread() if f["type"] == "presence"] == []  # nothing more


async def test_close_racing_a_join_of_the_same_user_keeps_her_present(make_server) -> None:
    """Presence updates are applied in hub order: a close's removal held in the store
    cannot land after the same user's join on this instance and erase it."""
    bp = GatedBackplane()
    server = await make_server(backplane=bp, history_size=0)
    tab1, watcher = await peer(server, "alice"), await peer(server, "bob")
    await join(tab1)
    await join(watcher)
    await server.settled()
    tab2 = await peer(server, "alice")
    await tab1.leave()  # alice's only tab in the room closes...
    await join(tab2)  # ...and her other tab joins before the store was updated
    await server.settled()
    assert await who(watcher) == ["alice", "bob"]
    assert sorted(await bp.presence.presence_list(server.relay.history_key("r"))) == ["alice", "bob"]


async def test_stop_removes_this_instances_entries_at_once(make_server) -> None:
    bus = f"presence-{uuid.uuid4().hex[:8]}"
    a = await make_server(backplane=GatedBackplane(bus))
    b = await make_server(backplane=GatedBackplane(bus))
    alice, bob = await peer(a, "alice"), await peer(b, "bob")
    await join(alice)
    await join(bob)
    await a.settled()
    await a.stop()
    assert await who(bob) == ["bob"]


# -- a SIGKILLed instance on a real Redis (or wskit's fakeredis over TCP) ------------

@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("redis", ["fakeredis"] + (["redis"] if REDIS_URL else []))
async def test_a_killed_instance_vanishes_within_the_ttl(redis: str) -> None:
    secret, ns, ttl = secrets.token_hex(32), f"t{uuid.uuid4().hex[:10]}", 2.0
    procs = []
    clients: list[Client] = []
    try:
        if redis == "fakeredis":
            procs.append(await spawn("fakeredis", "--port", "0"))
            url = await first_line(procs[-1])
        else:
            assert REDIS_URL
            url = REDIS_URL
        servers = []
        for fw in ("aiohttp", "fastapi", "aiohttp"):
            servers.append(await spawn(
                "serve", "--framework", fw, "--port", "0", "--secret", secret,
                "--redis", url, "--namespace", ns, "--presence-ttl", str(ttl),
                "--presence-events"))
            procs.append(servers[-1])
        urls = [await first_line(p) for p in servers]
        for i, name in enumerate(("doomed", "bob", "carol")):
            c = Client(urls[i], user=name, secret=secret)
            await c.connect()
            await c.join("lobby")
            clients.append(c)
        bob, carol = clients[1], clients[2]

        async def everyone_sees(users: list[str]) -> bool:
            return all([await c.presence("lobby") == users for c in (bob, carol)])

        await until(lambda: everyone_sees(["bob", "carol", "doomed"]), 5)
        servers[0].kill()  # no close frames, no cleanup: only the TTL can tell
        await servers[0].wait()
        killed = time.monotonic()
        await until(lambda: everyone_sees(["bob", "carol"]), ttl + 1)
        assert time.monotonic() - killed <= ttl + 1
        # the refresh that found the entry expired announced the departure
        leave = await bob.expect("presence", timeout=ttl)
        while leave["event"] != "leave":  # carol's arrival came first
            leave = await bob.expect("presence", timeout=ttl)
        assert leave["userId"] == "doomed"
    finally:
        for c in clients:
            await c.close()
        for p in procs:
            if p.returncode is None:
                await interrupt(p)
