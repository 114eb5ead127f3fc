"""A Redis Cluster failover that lost acknowledged posts is a new epoch, never a silent gap.

The cluster counterpart of test_failover.py. A cluster replica is promoted by the
cluster itself when its master dies, and replication is asynchronous there too:
the replica may lack the last posts its master acknowledged, with the room's epoch
replicated beside an older counter. Its next posts would take offsets clients have
already seen. The append and read scripts trust a room's history only under the
``master_replid`` it was written under (scripts.py, ``continued``; architecture
note 26), and a promoted replica has a new one, so the room gets a fresh epoch.

On a private cluster (wskit.devtools.localcluster: 3 masters, 1 s node timeout;
never the shared Redis) plus one replica, for the master that owns the test room,
with ``cluster-replica-validity-factor 0`` so that it may be promoted however
stale: the replica is frozen (SIGSTOP) and its replication connection closed by
the master (CLIENT KILL TYPE replica), so the last posts exist on the master only;
the master is SIGKILLed, the replica thawed, and the cluster fails over by itself.
The test checks on the promoted replica that the hole is real before asserting
what clients are told: raw WebSocket peers (what the server sends, with no client
logic) and a wskit.Client (whose tracker reports ``history_reset``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from peers import connect_peer

from wskit.devtools.localcluster import LocalCluster, available
from wskit.devtools.localredis import LocalRedis, free_port

pytestmark = [
    pytest.mark.skipif(not available(), reason="needs redis-server and redis-cli"),
    pytest.mark.slow,
    pytest.mark.timeout(120),
]

KEPT, LOST, AFTER = 5, 5, 8  # posts the replica has, posts only the master had, posts after
NODE_TIMEOUT_MS = 1000


class Shard:
    """The test room's shard: its master in a 3-master cluster, and one replica."""

    def __init__(self, cluster: LocalCluster, heir: LocalRedis, ns: str, master: int) -> None:
        self.cluster, self.heir, self.ns, self.master = cluster, heir, ns, master
        self.key = f"{ns}:{{room:lobby}}"


def _nodes(port: int) -> list[list[str]]:
    with redis.Redis(port=port, decode_responses=True, socket_timeout=2) as node:
        return [line.split() for line in node.execute_command("CLUSTER", "NODES").splitlines()]


def _add_replica(cluster: LocalCluster, master: int, heir: int, timeout: float = 20) -> None:
    """``heir`` joins the cluster as ``master``'s replica, synced, known to every master."""
    deadline = time.monotonic() + timeout

    def wait(condition: Any, what: str) -> None:
        while not condition():
            assert time.monotonic() < deadline, f"the replica never {what}"
            time.sleep(0.02)  # polling the cluster's own convergence, bounded

    with redis.Redis(port=master, decode_responses=True) as m, \
            redis.Redis(port=heir, decode_responses=True) as h:
        mid, hid = m.execute_command("CLUSTER", "MYID"), h.execute_command("CLUSTER", "MYID")
        m.config_set("repl-diskless-sync-delay", 0)  # sync now (the default waits 5 s)
        h.execute_command("CLUSTER", "MEET", "127.0.0.1", master)
        wait(lambda: any(row[0] == mid for row in _nodes(heir)), "met its master")
        h.execute_command("CLUSTER", "REPLICATE", mid)
        wait(lambda: h.info("replication").get("master_link_status") == "up", "synced")
        wait(lambda: all(any(row[0] == hid and "slave" in row[2] and row[3] == mid
                             for row in _nodes(port)) for port in cluster.ports),
             "became known to every master as the replica")


def _spawn_heir() -> LocalRedis:
    """A cluster node on a free port (its bus on port + 10000), not yet in the cluster."""
    for attempt in range(5):
        node = LocalRedis([
            "--cluster-enabled", "yes", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0"],  # promoted however old its data
            port=free_port(also_free=10000))
        try:
            return node.start()
        except OSError as exc:  # another process took the port in between
            if "in use" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def shard() -> Iterator[Shard]:
    ns = f"cfo{uuid.uuid4().hex[:8]}"
    with LocalCluster(masters=3, replicas=0, node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        master = cluster.primary_of(f"{ns}:{{room:lobby}}")
        heir = _spawn_heir()
        try:
            _add_replica(cluster, master, heir.port)
            yield Shard(cluster, heir, ns, master)
        finally:
            if heir.proc is not None and heir.proc.poll() is None:
                heir.proc.send_signal(signal.SIGCONT)  # were it still frozen
            heir.close()


async def _eventually(check: Any, timeout: float = 20.0) -> None:
    """Poll an async condition until it holds (another process's state)."""
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.05)  # between polls of another process's state
    await asyncio.wait_for(loop(), timeout)


async def test_a_promoted_cluster_replica_that_lost_posts_is_a_new_epoch_for_every_client(
        shard: Shard, start: Any, clients: Any, framework: str) -> None:
    ns, key, doomed, heir = shard.ns, shard.key, shard.master, shard.heir.port
    meta, stream = f"{key}:meta", f"{key}:stream"
    heir_proc = shard.heir.proc
    assert heir_proc is not None
    url = shard.cluster.url
    m = aioredis.Redis(port=doomed, decode_responses=True)
    r = aioredis.Redis(port=heir, decode_responses=True)
    try:
        async with aiohttp.ClientSession() as session:
            a = await start(framework, backplane=url, namespace=ns)
            b = await start("aiohttp", backplane=url, namespace=ns)
            alice = await clients(a, user="alice", reconnect=True)
            bob = await clients(b, user="bob", reconnect=True)
            peers = [await connect_peer(session, srv, f"raw{i}") for i, srv in enumerate((a, b))]
            for c in (alice, bob, *peers):
                await c.join("lobby")
            acks = [await bob.send("lobby", f"kept {i}") for i in range(KEPT)]
            assert await m.execute_command("WAIT", 1, 5000) == 1  # the replica has these

            heir_proc.send_signal(signal.SIGSTOP)  # the replica can neither read nor reconnect
            try:
                # (waitpid reports the child stopped: the signal has taken effect)
                await asyncio.wait_for(asyncio.to_thread(
                    os.waitpid, heir_proc.pid, os.WUNTRACED), 10)
                # its replication connection closed by the master: what follows is the
                # master's only (in its backlog, which dies with it)
                assert await m.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
                # acknowledged by the master only
                acks += [await bob.send("lobby", f"lost {i}") for i in range(LOST)]
                assert [f.get("offset") for f in acks] == list(range(1, KEPT + LOST + 1)), acks
                assert int(await m.hget(meta, "s")) == KEPT + LOST
                assert await m.xlen(stream) == KEPT + LOST
                assert (await m.info("replication"))["connected_slaves"] == 0
                seen: list[dict[str, Any]] = []
                before = []
                while len(before) < KEPT + LOST:
                    frame = await alice.receive(timeout=20)
                    seen.append(frame)
                    if frame["type"] == "message":
                        before.append(frame)
                assert [f["offset"] for f in before] == list(range(1, KEPT + LOST + 1))
                old_epoch, top = before[-1]["epoch"], before[-1]["offset"]
                for p in peers:
                    got = await p.until(f"lost {LOST - 1}")
                    assert [(f["offset"], f["epoch"]) for f in got] == [
                        (o, old_epoch) for o in range(1, top + 1)]
                reconnects = [srv.server.backplane.reconnects for srv in (a, b)]
                await asyncio.to_thread(shard.cluster.kill, doomed)  # SIGKILL, no goodbye
            finally:
                heir_proc.send_signal(signal.SIGCONT)

            async def promoted() -> bool:  # by the cluster itself: no TAKEOVER
                try:
                    info = await r.info("replication")
                    if info.get("role") != "master":
                        return False
                    slot = await r.execute_command("CLUSTER", "KEYSLOT", key)
                    owners = await r.execute_command("CLUSTER", "SLOTS")
                except aioredis.RedisError:
                    return False
                return any(lo <= slot <= hi and int(nodes[0][1]) == heir
                           for lo, hi, *nodes in owners)
            await _eventually(promoted)

            # the hole is real: the promoted replica lacks the last LOST posts
            assert int(await r.hget(meta, "s")) == KEPT
            assert await r.xlen(stream) == KEPT
            (_, last), = await r.xrevrange(stream, count=1)
            assert json.loads(last["d"])["content"] == f"kept {KEPT - 1}"

            async def resubscribed() -> bool:  # both instances listen on the new master
                return all(srv.server.backplane.reconnects > n and srv.server.backplane.healthy
                           for srv, n in zip((a, b), reconnects))
            await _eventually(resubscribed)

            sent = [await bob.send("lobby", f"after {i}") for i in range(AFTER)]
            assert all("partial" not in s for s in sent), sent
            texts = [f"after {i}" for i in range(AFTER)]
            # every connected client gets every post after the failover, once, in order
            # (none dropped as a duplicate of an offset it saw), under a new epoch
            for p in peers:
                got = (await p.until(texts[-1]))[top:]
                assert [f["content"] for f in got] == texts, got
                new_epoch = got[0]["epoch"]
                assert new_epoch != old_epoch, got
                # the offsets of the lost posts are given again: only the epoch tells
                assert [(f["offset"], f["epoch"]) for f in got] == [
                    (o, new_epoch) for o in range(KEPT + 1, KEPT + AFTER + 1)]
            after = []
            while len(after) < AFTER:
                frame = await alice.receive(timeout=20)
                seen.append(frame)
                if frame["type"] == "message":
                    after.append(frame)
            assert [f["content"] for f in after] == texts
            assert {f["epoch"] for f in after} == {new_epoch}
            resets = [f for f in seen if f["type"] == "history_reset"]
            assert resets and resets[-1]["epoch"] == new_epoch

            # a rejoin is never told "recovered" over the hole: from where the clients
            # were, from where the replica stopped (what was acknowledged after it is gone),
            # above the top
            new_top = KEPT + AFTER
            for i, since in enumerate([{"offset": top, "epoch": old_epoch},
                                       {"offset": KEPT, "epoch": old_epoch},
                                       {"offset": new_top + 50, "epoch": new_epoch}]):
                dave = await connect_peer(session, (a, b)[i % 2], f"dave{i}")
                joined = await dave.join("lobby", since)
                assert joined["recovered"] is False, (since, joined)
                assert joined["epoch"] == new_epoch, (since, joined)
                await dave.ws.close()
            # while a rejoin within the new epoch recovers exactly what it missed
            erin = await connect_peer(session, a, "erin")
            joined = await erin.join("lobby", {"offset": new_top - 2, "epoch": new_epoch})
            assert joined["recovered"] is True, joined
            replay = await erin.until(texts[-1])
            assert [(f["offset"], f["content"]) for f in replay] == [
                (new_top - 1, texts[-2]), (new_top, texts[-1])]
            await erin.ws.close()
            for p in peers:
                await p.ws.close()
    finally:
        await m.aclose()
        await r.aclose()
