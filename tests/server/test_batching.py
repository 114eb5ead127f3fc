"""Posts are batched per loop tick and pipelined (issue 11: history on must cost
little more than history off). Specified without sockets, plus the Redis pipeline
on fakeredis and on a private redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from ownredis import OwnRedis, needs_redis_server

from wskit import ChatServer
from wskit.backplane import RedisBackplane, RoomPost, decode_envelope
from wskit.backplane.redis import MAX_RUN, runs
from wskit.core.history import Retention
from wskit.testing.memory import GatedBackplane, Peer

pytestmark = pytest.mark.timeout(20)


async def peer(server: ChatServer, user: str) -> Peer:
    return await Peer(server, user).connect()


async def joined(server: ChatServer, *users: str, room: str = "r") -> list[Peer]:
    peers = [await peer(server, u) for u in users]
    for p in peers:
        assert (await p.request({"type": "join", "roomId": room}))["type"] == "joined"
    return peers


async def settle(condition: Callable[[], bool], steps: int = 10_000) -> None:
    """Let every ready task run (no timer involved) until ``condition`` holds."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def post(i: int, room: str = "r") -> dict[str, Any]:
    return {"type": "message", "roomId": room, "content": f"m{i}", "ref": i}


@pytest.mark.parametrize("history", [100, 0])
async def test_posts_of_one_tick_from_several_senders_are_one_batch(make_server,
                                                                     history: int) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp, history_size=history)
    alice, bob, carol, dave = await joined(server, "alice", "bob", "carol", "dave")
    bp.batches.clear()
    for i, p in enumerate((alice, bob, carol)):
        p.send(post(i))  # all three readers wake in the same loop tick
    for i, p in enumerate((alice, bob, carol)):
        reply = await p.recv()
        while reply["type"] == "message":
            reply = await p.recv()
        assert reply["type"] == "sent" and reply["ref"] == i
        assert ("offset" in reply) == bool(history)
    assert bp.batches == [3]
    got = [(await dave.recv())["content"] for _ in range(3)]
    assert sorted(got) == ["m0", "m1", "m2"]


async def test_a_burst_from_one_sender_is_read_on_while_the_store_waits(make_server) -> None:
    """The reader does not wait for each post's round trip: a burst is one batch, its
    replies come in request order, and a later request is answered after them."""
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, bob = await joined(server, "alice", "bob")
    bp.batches.clear()
    gate = bp.hold("publish")
    for i in range(1, 6):
        alice.send(post(i))
    alice.send({"type": "ping", "ref": "after"})
    await gate.arrived()
    await settle(alice.transport.incoming.empty)  # all six frames are read while held
    assert alice.unread() == []  # and none answered yet
    bp.open("publish")
    replies = [await alice.recv() for _ in range(6)]
    assert [(r["type"], r.get("ref"), r.get("offset")) for r in replies] == [
        ("sent", 1, 1), ("sent", 2, 2), ("sent", 3, 3), ("sent", 4, 4), ("sent", 5, 5),
        ("pong", "after", None)]
    assert bp.batches == [5]
    assert [(m["content"], m["offset"]) for m in [await bob.recv() for _ in range(5)]] == [
        (f"m{i}", i) for i in range(1, 6)]


async def test_a_failed_batch_is_one_partial_reply_per_post_delivered_here_once(
        make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, carol = await joined(server, "alice", "carol")
    bp.drop()
    for i in range(1, 4):
        alice.send(post(i))
    alice.send({"type": "ping", "ref": "fence"})
    replies = [await alice.recv() for _ in range(4)]
    assert [r.get("ref") for r in replies] == [1, 2, 3, "fence"]
    assert all(r["partial"]["code"] == "backplane_unavailable" for r in replies[:3])
    assert all("offset" not in r for r in replies[:3])
    got = [await carol.recv() for _ in range(3)]
    assert [m["content"] for m in got] == ["m1", "m2", "m3"]
    assert all("offset" not in m for m in got)
    assert carol.unread() == []


async def test_a_sender_far_ahead_of_the_store_is_paused(make_server) -> None:
    """At most 64 posts of one connection wait for the backplane; then its reading
    pauses until the store catches up (nothing is refused, nothing lost)."""
    from wskit.server.delivery import _POSTS_IN_FLIGHT

    bp = GatedBackplane()
    server = await make_server(backplane=bp, outbox_limit=1000)
    alice, bob = await joined(server, "alice", "bob")
    gate = bp.hold("publish")
    total = _POSTS_IN_FLIGHT + 10
    for i in range(1, total + 1):
        alice.send(post(i))
    await gate.arrived()
    # the reader takes one more than the bound, then pauses: the rest wait unread
    unread = total - _POSTS_IN_FLIGHT - 1
    await settle(lambda: alice.transport.incoming.qsize() <= unread)
    for _ in range(100):  # and stays paused
        await asyncio.sleep(0)
    assert alice.transport.incoming.qsize() == unread
    bp.open("publish")
    replies = [await alice.recv() for _ in range(total)]
    assert [r["offset"] for r in replies] == list(range(1, total + 1))
    assert [(await bob.recv())["offset"] for _ in range(total)] == list(range(1, total + 1))


async def test_stop_with_a_batch_stuck_in_the_backend_ends_within_the_drain(
        make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp, drain_timeout=0.3)
    (alice,) = await joined(server, "alice")
    gate = bp.hold("publish")
    alice.send(post(1))
    await gate.arrived()
    await asyncio.wait_for(server.stop(), 3)
    assert alice.transport.close_code == 1012
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
              and not t.get_name().startswith("peer-")]
    assert not [t for t in others if "wskit" in t.get_name()], others


# -- the Redis pipeline ---------------------------------------------------------

def batch(n: int, start: int = 0) -> list[RoomPost]:
    keep = Retention(10, 60)
    return [RoomPost("ns:room:r", "inst/c1", f'{{"type":"message","content":"m{start + i}"}}',
                     "ns:{room:r}", keep) for i in range(n)]


async def check_pipeline(bp: RedisBackplane) -> None:
    first = await bp.send(batch(3))
    assert [r[0] for r in first] == [1, 2, 3]  # type: ignore[index]
    epoch = first[0][1]  # type: ignore[index]
    assert {r[1] for r in first} == {epoch}  # type: ignore[index]
    # Redis restarted its script cache: the batch still runs whole, in order
    await bp.client.script_flush()
    mixed = batch(2, 3) + [RoomPost("ns:room:r", "inst", '{"type":"message"}')] + batch(1, 5)
    assert await bp.send(mixed) == [(4, epoch), (5, epoch), None, (6, epoch)]
    page = await bp.read("ns:{room:r}", Retention(10, 60), after=0)
    assert [e.offset for e in page.entries] == [1, 2, 3, 4, 5, 6]
    assert [e.text for e in page.entries][-1].endswith('"m5"}')


def test_a_batch_is_cut_into_runs_of_one_history() -> None:
    keep, other = Retention(10, 60), Retention(5, 60)
    a1, a2, a3 = (RoomPost("ns:room:a", "i", f"a{i}", "ns:{room:a}", keep) for i in range(3))
    b1 = RoomPost("ns:room:b", "i", "b1", "ns:{room:b}", keep)
    pub = RoomPost("ns:room:a", "i", "p")  # published only: always alone
    a_other = RoomPost("ns:room:a", "i", "a4", "ns:{room:a}", other)
    a_elsewhere = RoomPost("ns:room:a", "j", "a5", "ns:{room:a}", keep)
    posts = [a1, a2, b1, a3, pub, pub, a3, a_other, a_elsewhere, a1]
    assert runs(posts) == [[a1, a2], [b1], [a3], [pub], [pub], [a3], [a_other],
                           [a_elsewhere], [a1]]
    long = runs([a1] * (2 * MAX_RUN + 1))
    assert [len(run) for run in long] == [MAX_RUN, MAX_RUN, 1]
    assert runs([]) == []


async def check_runs(bp: RedisBackplane) -> None:
    """Runs of several rooms in one batch: every post gets its own offset, its own
    stream entry and its own publication, in order, whatever the runs were."""
    keep = Retention(200, 60)
    posts = []
    for i in range(MAX_RUN + 10):  # one room's run longer than a script call takes
        posts.append(RoomPost("ns:room:x", "inst", f'{{"type":"message","n":{i}}}',
                              "ns:{room:x}", keep))
        if i % 7 == 0:
            posts.append(RoomPost("ns:room:y", "inst", f'{{"type":"message","y":{i}}}',
                                  "ns:{room:y}", keep))
    pubsub = bp.client.pubsub()
    await pubsub.subscribe("ns:room:x", "ns:room:y")
    heard: dict[str, list[Any]] = {"ns:room:x": [], "ns:room:y": []}
    try:
        results = await bp.send(posts)
        want = {"ns:room:x": MAX_RUN + 10, "ns:room:y": len(posts) - MAX_RUN - 10}
        while sum(map(len, heard.values())) < len(posts):
            # (None for a subscribe confirmation; the test's timeout ends a silence)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is None:
                continue
            channel = message["channel"]  # (the backplane's client decodes replies)
            origin, frame = decode_envelope(message["data"])  # a valid envelope
            assert origin == "inst"
            heard[channel].append((json.loads(message["data"]), frame))
    finally:
        await pubsub.aclose()
    for channel, room in (("ns:room:x", "x"), ("ns:room:y", "y")):
        mine = [(p, r) for p, r in zip(posts, results) if p.channel == channel]
        assert len(mine) == want[channel]
        assert [r[0] for _, r in mine] == list(range(1, len(mine) + 1))  # type: ignore[index]
        envelopes = [raw for raw, _ in heard[channel]]
        assert [e["offset"] for e in envelopes] == list(range(1, len(mine) + 1))
        assert [e["frame"] for e in envelopes] == [json.loads(p.frame_text) for p, _ in mine]
        assert {e["epoch"] for e in envelopes} == {r[1] for _, r in mine}  # type: ignore[index]
        assert [f["offset"] for _, f in heard[channel]] == list(range(1, len(mine) + 1))
        page = await bp.read(f"ns:{{room:{room}}}", keep, after=0)
        assert [(e.offset, e.text) for e in page.entries] == [
            (i, p.frame_text) for i, (p, _) in enumerate(mine, 1)]


async def test_redis_pipeline_on_fakeredis() -> None:
    bp = RedisBackplane("fakeredis://batching-test")
    async with bp:
        await check_pipeline(bp)
    async with RedisBackplane("fakeredis://batching-runs") as bp:
        await check_runs(bp)


@needs_redis_server
async def test_redis_pipeline_on_a_real_redis() -> None:
    own = OwnRedis()
    await own.start()
    try:
        async with RedisBackplane(own.url) as bp:
            await check_pipeline(bp)
            await check_runs(bp)
            own.stop()  # the server goes away: every post of a batch fails, none hangs
            results = await bp.send(batch(3))
            assert all(type(r).__name__ == "BackplaneUnavailable" for r in results), results
    finally:
        own.close()


# -- envelopes: our own are spliced, anyone else's are checked in full ---------------

async def test_a_broken_envelope_from_elsewhere_never_reaches_a_client(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    (alice,) = await joined(server, "alice")
    channel = server.relay.room_channel("r")
    broken = '{"origin":"redis-cli","frame":{"type":"message","content":"x",}}'  # trailing comma
    fine = ('{"origin":"redis-cli","frame":{"type":"message","roomId":"r","userId":"ops",'
            '"content":"maintenance","timestamp":0,"id":"cli-1"}}')
    await bp.publish(channel, broken)
    await bp.publish(channel, fine)
    got = await alice.recv()
    assert got["content"] == "maintenance"  # the broken one was dropped before it
    assert alice.unread() == []
