"""A Redis failover that lost acknowledged posts is a new epoch, never a silent gap.

Redis replicates asynchronously: a replica promoted after its primary died may
lack the last posts the primary acknowledged, with the room's epoch replicated
beside an older counter. Its next posts would reuse offsets clients have seen,
and clients would drop them as duplicates. The append and read scripts trust a
history only under the replication id it was written under (INFO's
``master_replid``, a new one on promotion), so every client is told instead.

Here, on private redis-server processes (the shared Redis is never touched): a
primary, a replica whose link to it goes through a TCP relay (cut: replication
held back, so the replica misses the last posts), and an address the instances
use that moves from the primary to the replica (a virtual IP in miniature).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from ownredis import OwnRedis, needs_redis_server

import wskit
from wskit.devtools.deploy import IdleRelay

pytestmark = [pytest.mark.timeout(120), needs_redis_server]


async def _eventually(check: Any, timeout: float = 20.0) -> None:
    """Poll an async condition until it holds (the replication link's state)."""
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.05)  # between polls of another process's state
    await asyncio.wait_for(loop(), timeout)


async def _messages(client: Any, n: int, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next ``n`` messages; every frame received on the way is kept in ``seen``."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        frame = await client.receive(timeout=20)
        seen.append(frame)
        if frame["type"] == "message":
            got.append(frame)
    return got


async def test_a_promoted_replica_that_lost_posts_is_a_new_epoch_for_every_client(
        start, clients, framework) -> None:
    primary = await OwnRedis().start()
    link = await IdleRelay(("127.0.0.1", primary.port), idle_timeout=None).start()
    replica = await OwnRedis(["--replicaof", "127.0.0.1", str(link.port)]).start()
    vip = await IdleRelay(("127.0.0.1", primary.port), idle_timeout=None).start()
    p = aioredis.Redis(port=primary.port)
    r = aioredis.Redis(port=replica.port)
    try:
        async def linked() -> bool:
            return (await r.info("replication")).get("master_link_status") == "up"
        await _eventually(linked)

        url = f"redis://{vip.address}/0"
        ns = f"fo{uuid.uuid4().hex[:8]}"
        a = await start(framework, backplane=url, namespace=ns)
        b = await start("aiohttp", backplane=url, namespace=ns)
        alice = await clients(a, user="alice", reconnect=True)
        bob = await clients(b, user="bob", reconnect=True)
        for c in (alice, bob):
            await c.join("lobby")
        for i in range(5):
            await bob.send("lobby", f"kept {i}")
        assert await p.execute_command("WAIT", 1, 5000) == 1  # the replica has these

        link.cut()                                  # replication held back from here
        for i in range(5):
            await bob.send("lobby", f"lost {i}")    # acknowledged by the primary only
        seen: list[dict[str, Any]] = []
        before = await _messages(alice, 10, seen)
        old_epoch, top = before[-1]["epoch"], before[-1]["offset"]
        assert [m["offset"] for m in before] == list(range(1, 11))

        reconnects = [srv.server.backplane.reconnects for srv in (a, b)]
        # the primary dies; the replica, 5 posts behind, is promoted; the address moves
        primary.proc.kill()  # type: ignore[union-attr]
        await asyncio.to_thread(primary.proc.wait)  # type: ignore[union-attr]
        await r.execute_command("REPLICAOF", "NO", "ONE")
        # a backend job already on the new primary posts before the instances are
        # back: nobody hears these on the bus; the instances' repairs must find them
        async with wskit.Publisher(f"redis://127.0.0.1:{replica.port}/0",
                                   namespace=ns) as job:
            meanwhile = [await job.publish("lobby", f"meanwhile {i}", user="job")
                         for i in range(3)]
        assert meanwhile == [6, 7, 8]  # the counter goes on, under a new epoch
        vip.target = ("127.0.0.1", replica.port)
        vip.cut()
        vip.mend()
        async def resubscribed() -> bool:  # both listeners are back, on the replica
            return all(srv.server.backplane.reconnects > n and srv.server.backplane.healthy
                       for srv, n in zip((a, b), reconnects))
        await _eventually(resubscribed)

        sent = []
        for i in range(5):
            sent.append(await bob.send("lobby", f"after {i}"))
        assert all("partial" not in s for s in sent), sent
        after = await _messages(alice, 8, seen)
        # nothing posted after the failover is lost or dropped as a duplicate, and
        # the client was told the history it knew is gone
        assert [m["content"] for m in after] == [f"meanwhile {i}" for i in range(3)] + [
            f"after {i}" for i in range(5)]
        assert [m["offset"] for m in after] == list(range(6, 14))
        new_epoch = after[0]["epoch"]
        assert new_epoch != old_epoch and {m["epoch"] for m in after} == {new_epoch}
        resets = [f for f in seen if f["type"] == "history_reset"]
        assert resets and resets[-1]["epoch"] == new_epoch

        # a client rejoining from where it was is never told "recovered"
        dave = await clients(b, user="dave")
        await dave.send_raw({"type": "join", "roomId": "lobby", "ref": "r",
                             "since": {"offset": top, "epoch": old_epoch}})
        joined = await dave.expect("joined")
        assert joined["recovered"] is False and joined["epoch"] == new_epoch
        await dave.send_raw({"type": "join", "roomId": "lobby", "ref": "r2",
                             "since": {"offset": top + 50, "epoch": new_epoch}})
        assert (await dave.expect("joined"))["recovered"] is False  # above the top
    finally:
        await p.aclose()
        await r.aclose()
        await vip.stop()
        await link.stop()
        replica.close()
        primary.close()
