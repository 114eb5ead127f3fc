"""Reading a room nobody posted in writes nothing (fakeredis, and a real Redis
when WSKIT_REDIS_URL is set): its epoch is the one its first post will take.

Joins and history reads of empty rooms once left a key each (HSETNX on read),
with an hour's TTL: 500 joins, 500 keys.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from wskit import ChatServer
from wskit.backplane import RedisBackplane
from wskit.core.history import Retention
from wskit.testing.memory import Peer

pytestmark = pytest.mark.timeout(60)


async def keys(bp: RedisBackplane, ns: str) -> list[str]:
    return sorted([k async for k in bp.client.scan_iter(match=f"{ns}:*", count=1000)])


async def test_reads_of_an_empty_room_write_nothing_and_agree_with_its_first_post(
        backplane_url: str) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    key, channel, keep = f"{ns}:{{room:r}}", f"{ns}:room:r", Retention(10, 3600)
    async with RedisBackplane(backplane_url) as bp:
        try:
            pages = [await bp.read(key, keep), await bp.read(key, keep, after=0),
                     await bp.read(key, keep, last=5), await bp.read(key, keep, after=3)]
            assert await keys(bp, ns) == []
            assert {(p.top, p.oldest, len(p.entries)) for p in pages} == {(0, 1, 0)}
            epochs = {p.epoch for p in pages}
            assert len(epochs) == 1 and len(epochs.pop()) == 8  # stable: one epoch
            offset, epoch = await bp.append(key, channel, "inst", '{"type":"message"}', keep)
            assert (offset, epoch) == (1, pages[0].epoch)
            assert await keys(bp, ns) == [f"{key}:meta", f"{key}:stream"]
            page = await bp.read(key, keep, after=0)
            assert (page.epoch, page.top, [e.offset for e in page.entries]) == (epoch, 1, [1])
        finally:
            await bp.client.delete(f"{key}:meta", f"{key}:stream")


async def test_500_joins_and_history_reads_without_posts_leave_no_key(
        backplane_url: str) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    server = ChatServer(backplane=backplane_url, namespace=ns, ping_interval=None,
                        ping_timeout=None, presence_events=False,
                        max_rooms_per_connection=None)  # 250 rooms on one connection
    await server.start()
    try:
        peer = await Peer(server, "ann").connect()
        for i in range(250):
            joined = await peer.request({"type": "join", "roomId": f"room{i}"})
            assert joined["type"] == "joined" and joined["offset"] == 0
            history = await peer.request({"type": "history", "roomId": f"room{i}"})
            assert history["type"] == "history" and history["messages"] == []
            assert history["epoch"] == joined["epoch"]
        bp = server.backplane
        assert isinstance(bp, RedisBackplane)
        left = [k for k in await keys(bp, ns) if ":presence" not in k]
        assert left == []  # (presence entries are the joins' own, with a short TTL)
        await peer.leave()
    finally:
        await server.stop()


async def test_an_expired_history_comes_back_in_another_epoch(backplane_url: str) -> None:
    """The period in the unborn epoch: a history lives ttl s at least, so the one
    born after it has expired is born in a later period."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    key, channel, keep = f"{ns}:{{room:r}}", f"{ns}:room:r", Retention(10, 1)
    async with RedisBackplane(backplane_url) as bp:
        try:
            _, first = await bp.append(key, channel, "inst", '{"type":"message"}', keep)
            deadline = time.monotonic() + 10
            while await keys(bp, ns):  # Redis expires it on its own clock
                assert time.monotonic() < deadline, "the history never expired"
                await asyncio.sleep(0.1)
            page = await bp.read(key, keep)
            assert page.top == 0 and page.epoch != first
            offset, second = await bp.append(key, channel, "inst", '{"type":"message"}', keep)
            assert offset == 1 and second != first
        finally:
            await bp.client.delete(f"{key}:meta", f"{key}:stream")


async def test_a_server_that_cannot_name_its_lifetime_keeps_the_old_rule() -> None:
    """An injected fakeredis client (no INFO run_id, no token): the read stores an
    epoch, as before, so that read and first post still agree."""
    import fakeredis

    client: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(),
                                           decode_responses=True)
    keep = Retention(10, 60)
    async with RedisBackplane("fakeredis://injected", client=client) as bp:
        page = await bp.read("ns:{room:r}", keep)
        assert await client.exists("ns:{room:r}:meta") == 1
        assert (await bp.append("ns:{room:r}", "ns:room:r", "i", '{"type":"x"}', keep)
                ) == (1, page.epoch)
    await client.aclose()
