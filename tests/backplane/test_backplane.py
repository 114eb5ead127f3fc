"""Several instances, one chat system: fakeredis always, real Redis when configured."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from ownredis import OwnRedis, needs_redis_server
from processes import first_line, interrupt, spawn

import wskit
from wskit import ServerError
from wskit.backplane import MemoryBackplane, RedisBackplane, decode_envelope, encode_envelope

MIX = ("aiohttp", "fastapi", "aiohttp")


async def _three(start, backplane_url: str) -> list[wskit.RunningServer]:
    return [await start(fw, backplane=backplane_url, instance_name=f"{fw}{i}")
            for i, fw in enumerate(MIX)]


async def _collect(client: wskit.Client, until: set[str]) -> list[dict[str, Any]]:
    """Frames until every id in ``until`` (end markers) has been seen."""
    frames, pending = [], set(until)
    while pending:
        frame = await client.receive(timeout=10)
        frames.append(frame)
        pending.discard(frame.get("content"))
    return frames


async def test_three_instances_deliver_exactly_once(start, clients, backplane_url) -> None:
    servers = await _three(start, backplane_url)
    users = [await clients(s, user=f"u{i}") for i, s in enumerate(servers)]
    for u in users:
        await u.join("room")
    posts = 20
    for n in range(posts):
        for i, u in enumerate(users):
            await u.send("room", f"{i}:{n}")
    for i, u in enumerate(users):
        await u.send("room", f"end{i}")
    for i, u in enumerate(users):
        others = {f"end{j}" for j in range(3) if j != i}
        frames = await _collect(u, others)
        contents = Counter(f["content"] for f in frames)
        expected = {f"{j}:{n}" for j in range(3) if j != i for n in range(posts)} | others
        assert set(contents) == expected, f"user {i} got the wrong set"
        assert max(contents.values()) == 1, f"user {i} got duplicates"
        # per-origin order is kept
        for j in range(3):
            if j != i:
                seq = [int(c.split(":")[1]) for c in contents if c.startswith(f"{j}:")]
                assert [int(f["content"].split(":")[1]) for f in frames
                        if f["content"].startswith(f"{j}:")] == sorted(seq)
        assert u.drain() == []


async def test_direct_messages_cross_instances(start, clients, backplane_url) -> None:
    a, b, c = await _three(start, backplane_url)
    alice = await clients(a, user="alice")
    bob_tab1 = await clients(b, user="bob")
    bob_tab2 = await clients(c, user="bob")
    await alice.direct("bob", "both tabs, once each")
    for tab in (bob_tab1, bob_tab2):
        assert (await tab.receive())["content"] == "both tabs, once each"
    await bob_tab1.direct("alice", "back")
    assert (await alice.receive())["from"] == "bob"
    # bob's other tab, on another instance, sees what bob sent
    assert (await bob_tab2.receive())["content"] == "back"
    with pytest.raises(ServerError, match="user_offline"):
        await alice.direct("nobody", "anyone?")
    await alice.send_raw({"type": "ping"})
    assert (await alice.receive())["type"] == "pong"
    assert bob_tab1.drain() == [] and bob_tab2.drain() == [] and alice.drain() == []


async def test_instance_listens_only_for_rooms_with_local_members(start, clients, backplane_url) -> None:
    a, b, _ = await _three(start, backplane_url)
    ns = a.server.settings.namespace
    x = await clients(a, user="x")
    await x.join("quiet")
    room = f"{ns}:room:quiet"
    assert room in a.server.backplane.channels
    assert room not in b.server.backplane.channels
    await x.leave("quiet")
    assert room not in a.server.backplane.channels
    await x.join("quiet")
    await x.close()
    # closing the last member's connection unsubscribes too (in the background)
    for _ in range(100):  # the server learns of the close when the TCP close arrives
        if x.user not in a.server.hub.users():
            break
        await asyncio.wait_for(a.server.settled(), 5)
        await asyncio.sleep(0.01)  # bounded poll until the close has reached the server
    await asyncio.wait_for(a.server.settled(), 5)
    assert room not in a.server.backplane.channels
    assert f"{ns}:user:x" not in a.server.backplane.channels


async def test_memory_backplane_contract() -> None:
    bus = f"t{uuid.uuid4().hex[:6]}"
    one, two = MemoryBackplane(bus), MemoryBackplane(bus)
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    two.on_message = lambda ch, data: got.put_nowait((ch, data))
    async with one, two:
        await two.subscribe("c")
        assert await one.publish("c", encode_envelope("one", '{"type":"x"}')) == 1
        ch, data = await asyncio.wait_for(got.get(), 5)
        assert ch == "c" and decode_envelope(data) == ("one", {"type": "x"})
        await two.unsubscribe("c")
        assert await one.publish("c", "nobody hears") == 0


@pytest.mark.parametrize("bad", ['{"frame":{"type":"x"}}', "[]", "not json", '{"origin":"o"}'])
def test_malformed_envelopes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_envelope(bad)


async def test_injected_envelope_reaches_room_and_garbage_does_not(start, clients, backplane_url) -> None:
    a = await start("fastapi", backplane=backplane_url)
    alice = await clients(a, user="alice")
    await alice.join("lobby")
    ns = a.server.settings.namespace
    injector = RedisBackplane(backplane_url)
    async with injector:
        await injector.publish(f"{ns}:room:lobby", "garbage, logged and dropped")
        frame = ('{"type":"message","roomId":"lobby","userId":"system",'
                 '"content":"maintenance at noon","timestamp":0,"id":"cli-1"}')
        await injector.publish(f"{ns}:room:lobby", encode_envelope("redis-cli", frame))
    got = await alice.receive()
    assert got["userId"] == "system" and got["content"] == "maintenance at noon"
    assert alice.drain() == []


async def test_injected_client_is_used_and_not_closed(start, clients) -> None:
    import fakeredis

    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    a = await start("aiohttp", backplane=wskit.backplane.from_url(client=client))
    b = await start("fastapi", backplane=wskit.backplane.from_url(client=client))
    x, y = await clients(a, user="x"), await clients(b, user="y")
    await x.join("r")
    await y.join("r")
    await x.send("r", "through an injected client")
    assert (await y.receive())["content"] == "through an injected client"
    await a.stop()
    await b.stop()
    assert await client.ping()  # still usable: the caller owns it
    await client.aclose()


# -- separate processes -------------------------------------------------------

@pytest.mark.slow
async def test_separate_processes_share_wskit_fakeredis() -> None:
    secret = "proc-secret-0123456789abcdef0123456789"
    procs = [await spawn("fakeredis", "--port", "0")]
    try:
        redis_url = await first_line(procs[0])
        assert redis_url.startswith("redis://127.0.0.1:")
        urls = []
        for fw in ("aiohttp", "fastapi"):
            procs.append(await spawn("serve", "--framework", fw, "--port", "0",
                                      "--secret", secret, "--redis", redis_url))
            urls.append(await first_line(procs[-1]))
        async with wskit.connect(urls[0], user="alice", secret=secret) as alice, \
                wskit.connect(urls[1], user="bob", secret=secret) as bob:
            await alice.join("r")
            await bob.join("r")
            await alice.send("r", "process A to B")
            assert (await bob.receive(timeout=10))["content"] == "process A to B"
            await bob.send("r", "process B to A")
            assert (await alice.receive(timeout=10))["content"] == "process B to A"
            await bob.direct("alice", "direct across processes")
            assert (await alice.receive(timeout=10))["content"] == "direct across processes"
    finally:
        for proc in reversed(procs):
            await interrupt(proc)


# -- faults: a redis-server of the test's own (tests/ownredis.py) -------------


async def _roundtrip(sender: wskit.Client, receiver: wskit.Client, text: str) -> None:
    await sender.send("r", text)
    # skips a history_reset event: Redis restarted empty is a new history (a new epoch)
    frame = await receiver.expect("message", timeout=10)
    assert frame["content"] == text, frame


@needs_redis_server
async def test_redis_auth_failure_is_a_clear_error(start) -> None:
    server = OwnRedis(["--requirepass", "sesame"])
    await server.start()
    try:
        with pytest.raises(wskit.BackplaneUnavailable, match="requires a password"):
            await start("aiohttp", backplane=server.url)
        with pytest.raises(wskit.BackplaneUnavailable, match="refused the credentials") as info:
            await start("fastapi", backplane=server.url.replace("redis://", "redis://:wrong@"))
        assert "wrong" not in str(info.value)  # the password is never echoed
        ok = await start("aiohttp", backplane=server.url.replace("redis://", "redis://:sesame@"))
        assert ok.server is not None and ok.server.backplane.healthy
        assert "sesame" not in ok.server.backplane.url
    finally:
        server.close()


@needs_redis_server
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_redis_restart_is_survived(start, clients, own_redis, caplog) -> None:
    a = await start("aiohttp", backplane=own_redis.url)
    b = await start("fastapi", backplane=own_redis.url)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    carol = await clients(a, user="carol")  # alice's neighbour on the same instance
    for c in (alice, bob, carol):
        await c.join("r")
    await _roundtrip(alice, bob, "before")
    assert (await carol.receive())["content"] == "before"

    own_redis.stop()
    # during the outage: local delivery goes on, and the one reply says it went no further
    sent = await alice.send("r", "during")
    assert sent["type"] == "sent" and sent["partial"]["code"] == "backplane_unavailable"
    assert (await carol.receive())["content"] == "during"
    # a direct message to a user elsewhere: one error, never "user_offline"
    with pytest.raises(ServerError, match="backplane_unavailable"):
        await alice.direct("bob", "are you there?")
    # a direct message to a user here: delivered, and the reply says "here only"
    assert (await alice.direct("carol", "psst"))["partial"]["code"] == "backplane_unavailable"
    assert (await carol.receive())["content"] == "psst"
    # exactly one reply each: nothing else is waiting
    await alice.send_raw({"type": "ping", "ref": "last"})
    assert (await alice.receive()) == {"type": "pong", "ref": "last"}

    await own_redis.start()
    t0 = asyncio.get_running_loop().time()
    await a.server.backplane.wait_healthy(timeout=15)
    await b.server.backplane.wait_healthy(timeout=15)
    recovered = asyncio.get_running_loop().time() - t0
    assert recovered < 15
    await _roundtrip(alice, bob, "after restart")
    await _roundtrip(bob, alice, "and back")
    assert (await carol.expect("message"))["content"] == "after restart"
    assert (await carol.expect("message"))["content"] == "and back"
    assert bob.drain() == []  # "during" never reached bob: at-most-once, as documented
    assert any("reconnected" in r.getMessage() for r in caplog.records)


@needs_redis_server
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_killed_pubsub_connection_is_survived(start, clients, own_redis) -> None:
    a = await start("fastapi", backplane=own_redis.url)
    b = await start("aiohttp", backplane=own_redis.url)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    await alice.join("r")
    await bob.join("r")
    await _roundtrip(alice, bob, "before")
    admin = aioredis.from_url(own_redis.url)
    try:
        before = b.server.backplane.reconnects
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 2
        for bp in (a.server.backplane, b.server.backplane):
            for _ in range(500):
                if bp.reconnects > 0 and bp.healthy:
                    break
                await asyncio.sleep(0.01)  # bounded poll for the supervisor's recovery
            assert bp.reconnects >= 1 and bp.healthy
        assert b.server.backplane.reconnects > before
        await _roundtrip(alice, bob, "after kill")
        await _roundtrip(bob, alice, "both ways")
    finally:
        await admin.aclose()


async def test_concurrent_joins_and_leaves_leave_subscriptions_right(start, clients,
                                                                     backplane_url) -> None:
    """Many tabs join and leave the same rooms at once; the instance ends up subscribed to
    exactly the rooms it has members in, and those rooms hear the other instance."""
    import random

    a = await start("aiohttp", backplane=backplane_url)
    b = await start("fastapi", backplane=backplane_url)
    rooms = ["r0", "r1", "r2"]
    tabs = [await clients(a, user=f"u{i}") for i in range(8)]
    rng = random.Random(7)

    async def churn(tab: wskit.Client) -> None:
        inside: set[str] = set()
        for _ in range(25):
            room = rng.choice(rooms)
            if room in inside:
                await tab.leave(room)
                inside.discard(room)
            else:
                await tab.join(room)
                inside.add(room)

    await asyncio.gather(*(churn(t) for t in tabs))
    await asyncio.wait_for(a.server.settled(), 5)
    ns = a.server.settings.namespace
    occupied = set(a.server.hub.rooms())
    subscribed = {c.split(":room:")[1] for c in a.server.backplane.channels if ":room:" in c}
    assert subscribed == occupied
    poster = await clients(b, user="poster")
    for room in rooms:
        await poster.join(room)
        await poster.send(room, f"to {room}")
    for tab in tabs:
        rooms_of_tab = {r for r in rooms if a.server.hub.is_member(
            next(c for c in a.server.connections if c.user == tab.user), r)}
        got = {(await tab.receive())["roomId"] for _ in rooms_of_tab}
        assert got == rooms_of_tab
    assert {f"{ns}:room:{r}" for r in occupied} <= a.server.backplane.channels


@pytest.mark.timeout(60)
async def test_a_herd_of_joins_gets_its_history_not_a_pool_error(start, backplane_url) -> None:
    """250 joins at once (a drained instance's clients arriving): each is one history
    read. redis-py's default pool refused every read past its 100th ("Too many
    connections"), so 150 joined with ``history_unavailable`` and no position."""
    srv = await start("aiohttp", backplane=backplane_url)
    crowd = [wskit.Client(srv, user=f"u{i}") for i in range(250)]
    try:
        await asyncio.gather(*(c.connect() for c in crowd))
        replies = await asyncio.gather(*(c.join("lobby") for c in crowd))
        assert [r for r in replies if "partial" in r] == []
        assert {(r["offset"], r["epoch"]) for r in replies} == {(0, replies[0]["epoch"])}
    finally:
        await asyncio.gather(*(c.close() for c in crowd))
