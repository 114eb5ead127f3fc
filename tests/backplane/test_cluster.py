"""wskit on a real Redis Cluster (issue 12): 3 masters with a replica each, started
by the tests on free ports (never the shared Redis), and three wskit instances
(aiohttp, FastAPI, aiohttp) on it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

from wskit import Client
from wskit.backplane import from_url
from wskit.backplane.cluster import ClusterBackplane, parse_cluster_url
from wskit.devtools.localcluster import LocalCluster, available
from wskit.exceptions import ConfigError

pytestmark = [
    pytest.mark.skipif(not available(), reason="needs redis-server and redis-cli"),
    pytest.mark.slow,
    pytest.mark.timeout(120),
]

FRAMEWORKS = ("aiohttp", "fastapi", "aiohttp")


@pytest.fixture(scope="module")
def cluster() -> Any:
    with LocalCluster(masters=3, replicas=1) as c:
        yield c


async def instances(start: Any, url: str, **settings: Any) -> list[Any]:
    return [await start(fw, backplane=url, **settings) for fw in FRAMEWORKS]


def test_cluster_urls_are_parsed() -> None:
    nodes, options = parse_cluster_url("rediss-cluster://:s3cret@a:7000,b:7001")
    assert nodes == [("a", 7000), ("b", 7001)]
    assert options == {"ssl": True, "password": "s3cret"}
    assert isinstance(from_url("redis-cluster://127.0.0.1:7000"), ClusterBackplane)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_cluster_url("redis-cluster://nohost")


async def test_rooms_spread_over_every_shard_and_each_message_arrives_once(
        cluster: LocalCluster, start: Any, clients: Any) -> None:
    servers = await instances(start, cluster.url)
    rooms = [f"room{i}" for i in range(50)]
    members: dict[str, list[Client]] = {}
    for room in rooms:
        members[room] = []
        for i, server in enumerate(servers):
            c = await clients(server, user=f"{room}-u{i}")
            await c.join(room)
            members[room].append(c)
    # sharded pub/sub on every master, classic pub/sub nowhere
    for port in cluster.primaries():
        with redis.Redis(port=port, decode_responses=True) as r:
            assert r.execute_command("PUBSUB", "SHARDCHANNELS"), f"master {port} carries no room"
    for port in cluster.ports:
        with redis.Redis(port=port, decode_responses=True) as r:
            assert r.execute_command("PUBSUB", "CHANNELS") == []
    # three posts per room, one from each instance, then an end marker from a fourth
    # client: every member reads up to it (posts of one room arrive in offset order)
    for room in rooms:
        for k in range(3):
            await members[room][k].send(room, f"{room}-{k}")
        closer = await clients(servers[0], user=f"{room}-closer")
        await closer.join(room)
        await closer.send(room, "end")
    for room in rooms:
        for i, c in enumerate(members[room]):
            got = []
            while not got or got[-1]["content"] != "end":
                got.append(await c.expect("message", timeout=10))
            # exactly once, in order; never its own post
            assert [(f["offset"], f["content"]) for f in got] == [
                (k + 1, f"{room}-{k}") for k in range(3) if k != i] + [(4, "end")], got
            assert [f for f in c.drain() if f["type"] == "message"] == []


async def test_history_recovery_and_presence_on_the_cluster(
        cluster: LocalCluster, start: Any, clients: Any) -> None:
    a, b, c = await instances(start, cluster.url)
    alice = await clients(a, user="alice")
    joined = await alice.join("lobby")
    bob = await clients(b, user="bob")
    await bob.join("lobby")
    carol = await clients(c, user="carol")
    await carol.join("lobby")
    for who in (alice, bob, carol):
        assert await who.presence("lobby") == ["alice", "bob", "carol"]
    await alice.close()
    for k in range(5):
        await bob.send("lobby", f"missed {k}")
    back = await clients(c, user="alice")
    rejoin = await back.request({"type": "join", "roomId": "lobby",
                                 "since": {"offset": joined["offset"],
                                           "epoch": joined["epoch"]}})
    assert rejoin["recovered"] is True
    replayed = [await back.expect("message") for _ in range(5)]
    assert [m["content"] for m in replayed] == [f"missed {k}" for k in range(5)]
    history = await back.request({"type": "history", "roomId": "lobby", "limit": 2})
    assert [m["content"] for m in history["messages"]] == ["missed 3", "missed 4"]


@pytest.fixture
def own_cluster() -> Any:
    with LocalCluster(masters=3, replicas=1) as c:
        yield c


async def test_a_killed_master_fails_over_and_only_its_rooms_pause(
        own_cluster: LocalCluster, start: Any, clients: Any) -> None:
    """Kill the master of one room's slot: rooms on other shards never pause, and
    the room on the failed shard resumes once its replica took over."""
    servers = await instances(start, own_cluster.url)
    ns = servers[0].server.settings.namespace
    owner = {room: own_cluster.primary_of(f"{ns}:{{room:{room}}}")
             for room in (f"r{i}" for i in range(30))}
    doomed = next(iter(owner.values()))
    hit = next(r for r, p in owner.items() if p == doomed)
    spared = [r for r, p in owner.items() if p != doomed][:4]
    assert len({owner[r] for r in spared}) == 2  # the other two shards
    senders, receivers = {}, {}
    for room in [hit, *spared]:
        senders[room] = await clients(servers[0], user=f"s-{room}")
        receivers[room] = await clients(servers[1], user=f"r-{room}")
        await senders[room].join(room)
        await receivers[room].join(room)

    async def delivered(room: str, text: str, within: float) -> bool:
        await senders[room].send(room, text)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                frame = await receivers[room].expect("message", timeout=deadline
                                                     - time.monotonic())
            except (asyncio.TimeoutError, TimeoutError):
                return False
            if frame["content"] == text:
                return True
        return False

    for room in [hit, *spared]:
        assert await delivered(room, "before", 5)
    own_cluster.kill(doomed)
    killed = time.monotonic()
    resumed = None
    slowest_spared = 0.0
    for attempt in range(200):
        for room in spared:  # the other shards never pause
            t0 = time.monotonic()
            assert await delivered(room, f"spared {attempt}", 2.0), (room, attempt)
            slowest_spared = max(slowest_spared, time.monotonic() - t0)
        if await delivered(hit, f"hit {attempt}", 0.25):
            resumed = time.monotonic() - killed
            break
    assert resumed is not None and resumed < 15, resumed
    print(f"failover: the failed shard's room resumed after {resumed:.1f}s; "
          f"slowest delivery in the other shards' rooms {slowest_spared * 1000:.0f} ms")


async def test_the_backplane_reports_a_cluster_it_cannot_reach() -> None:
    bp = ClusterBackplane("redis-cluster://127.0.0.1:1", confirm_timeout=2)
    with pytest.raises(Exception, match="cannot reach the Redis Cluster"):
        await bp.start()


async def test_a_batch_of_runs_on_the_cluster_even_after_its_scripts_are_flushed(
        cluster: LocalCluster) -> None:
    """One pipeline, runs of posts to rooms on different shards: each post gets its
    room's next offset and its own entry; a shard that lost its scripts (a promoted
    replica starts with none) runs its runs again on their own, in order."""
    from wskit.backplane import RoomPost
    from wskit.core.history import Retention

    keep = Retention(500, 60)
    ns = f"runs{time.time_ns()}"
    rooms = [f"r{i}" for i in range(6)]
    shards = {cluster.primary_of(f"{ns}:{{room:{room}}}") for room in rooms}
    assert len(shards) > 1, "the rooms should span shards"

    def batch(start: int) -> list[RoomPost]:
        return [RoomPost(f"{ns}:{{room:{room}}}", "inst", f'{{"type":"message","n":{k}}}',
                         f"{ns}:{{room:{room}}}", keep)
                for k in range(start, start + 4) for room in rooms for _ in range(k % 3 + 1)]

    async with ClusterBackplane(cluster.url) as bp:
        first = batch(0)
        results = await bp.send(first)
        for port in cluster.primaries():
            with redis.Redis(port=port) as node:
                node.script_flush()
        second = batch(4)
        results += await bp.send(second)
        for room in rooms:
            key = f"{ns}:{{room:{room}}}"
            mine = [(p, r) for p, r in zip(first + second, results) if p.key == key]
            assert [r[0] for _, r in mine] == list(range(1, len(mine) + 1)), results  # type: ignore[index]
            page = await bp.read(key, keep, after=0)
            assert [(e.offset, e.text) for e in page.entries] == [
                (i, p.frame_text) for i, (p, _) in enumerate(mine, 1)]


async def test_a_cluster_gone_entirely_is_a_backplane_outage_on_every_path(
        own_cluster: LocalCluster) -> None:
    """Every node gone: redis-py's cluster client then raises RedisClusterException
    (not a RedisError) while it tries to rediscover the slots. A post, a history read
    and a presence change must each report BackplaneUnavailable (an error frame for the
    sender), never leak that exception as if the backend had a bug."""
    from wskit.backplane import RoomPost
    from wskit.core.history import Retention
    from wskit.exceptions import BackplaneUnavailable

    keep = Retention(50, 60)
    key = f"gone{time.time_ns()}:{{room:lobby}}"
    post = RoomPost(key, "inst", '{"type":"message"}', key, keep)
    async with ClusterBackplane(own_cluster.url, confirm_timeout=2) as bp:
        assert (await bp.send([post]))[0] == (1, (await bp.read(key, keep)).epoch)
        for port in own_cluster.ports:
            own_cluster.kill(port)
        for batch in ([post], [post, post], [post, RoomPost(key, "inst", "{}", None, None)]):
            results = await asyncio.wait_for(bp.send(batch), 30)
            assert len(results) == len(batch)
            assert all(isinstance(r, BackplaneUnavailable) for r in results), results
        with pytest.raises(BackplaneUnavailable, match="history read"):
            await asyncio.wait_for(bp.read(key, keep, after=0), 30)
        with pytest.raises(BackplaneUnavailable, match="presence join"):
            await asyncio.wait_for(bp.presence.presence_join(key, "ann", "inst", 30), 30)
        with pytest.raises(BackplaneUnavailable):
            await asyncio.wait_for(bp.publish(f"{key}:x", "hello"), 30)
