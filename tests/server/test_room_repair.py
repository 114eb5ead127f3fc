"""An instance that missed posts on the bus replays them to its members (wskit.server.positions).

The clients here are raw WebSocket peers that never repair anything themselves
(a browser page, a client of another language): whatever they get in order is
the server's doing. wskit.Client's own repair is tested in tests/client/test_gap_repair.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import aiohttp
import pytest
from peers import Peer, connect_peer

from wskit.devtools.deploy import IdleRelay
from wskit.testing import GatedBackplane

pytestmark = pytest.mark.timeout(90)

REDIS_URL = os.environ.get("WSKIT_REDIS_URL")


async def _quietly_behind(session: aiohttp.ClientSession, start: Any, framework: str,
                          posts: list[str]) -> tuple[Any, Peer, Peer]:
    """``a`` (GatedBackplane, no periodic check) misses ``posts`` by ``bob`` on ``b``;
    then its bus is back with no resubscribe reported. Returns (a, alice on a, bob)."""
    bus = f"repair-{uuid.uuid4().hex[:8]}"
    here = GatedBackplane(bus)
    a = await start(framework, backplane=here, position_check=0)
    b = await start("aiohttp", backplane=GatedBackplane(bus))
    alice, bob = await connect_peer(session, a, "alice"), await connect_peer(session, b, "bob")
    for p in (alice, bob):
        await p.join("lobby")
    here.drop()
    for text in posts:
        await bob.post("lobby", text)
    here.up = True                     # the bus is back, but no resubscribe is reported
    await here.subscriptions.settle()
    return a, alice, bob


async def _outage_case(start, framework: str, here: Any, there: Any, cut: Any,
                       mend: Any, **settings: Any) -> None:
    a = await start(framework, backplane=here, history_size=200, **settings)
    b = await start("aiohttp", backplane=there, history_size=200)
    async with aiohttp.ClientSession() as session:
        watchers = [await connect_peer(session, a, f"w{i}") for i in range(3)]
        bob = await connect_peer(session, b, "bob")
        for p in (*watchers, bob):
            await p.join("lobby")
        await bob.post("lobby", "before")
        for w in watchers:
            assert (await w.next("message"))["content"] == "before"

        cut()                                         # a hears nothing from the bus...
        outage = asyncio.get_running_loop().create_task(asyncio.sleep(2.0))  # its length
        for i in range(100):
            await bob.post("lobby", f"during {i}")    # ...while b posts 100
        await outage
        await mend(a)                                 # no post after: a quiet room

        for w in watchers:
            while len(w.messages) < 101:
                await w.next("message", timeout=20)
            got = w.messages[1:]
            assert [m["content"] for m in got] == [f"during {i}" for i in range(100)]
            offsets = [m["offset"] for m in got]
            assert offsets == list(range(offsets[0], offsets[0] + 100))
            assert not w.ws.closed  # without reconnecting
        assert a.server.positions is not None and a.server.positions.repaired >= 100


async def test_a_listener_outage_loses_nothing_for_connected_clients(start, framework) -> None:
    bus = f"repair-{uuid.uuid4().hex[:8]}"
    here = GatedBackplane(bus)
    async def mend(a: Any) -> None:
        await here.restore()

    await _outage_case(start, framework, here, GatedBackplane(bus), here.drop, mend)


@pytest.mark.skipif(REDIS_URL is None, reason="set WSKIT_REDIS_URL for the real Redis case")
async def test_a_real_redis_listener_outage_of_2s_loses_nothing(start, framework) -> None:
    """The instance's whole way to Redis is cut for 2 s (a TCP relay), so its
    subscription drops and reconnects; nothing tells the room a post was missed."""
    assert REDIS_URL is not None
    host, _, port = REDIS_URL.split("//")[1].split("/")[0].rpartition(":")
    relay = await IdleRelay((host, int(port)), idle_timeout=None).start()
    async def mend(a: Any) -> None:
        relay.mend()
        await a.server.backplane.wait_healthy(20)

    try:
        await _outage_case(start, framework, f"redis://{relay.address}/0", REDIS_URL,
                           relay.cut, mend)
    finally:
        await relay.stop()


async def test_a_jump_is_filled_from_the_history_before_the_post_after_it(start) -> None:
    """The next post after an outage shows the gap at once: the missing ones come first."""
    async with aiohttp.ClientSession() as session:
        _, alice, bob = await _quietly_behind(session, start, "fastapi",
                                              [f"lost {i}" for i in range(5)])
        await bob.post("lobby", "after")  # only the jump can show the gap
        while len(alice.messages) < 6:
            await alice.next("message")
        assert [m["content"] for m in alice.messages] == [f"lost {i}" for i in range(5)] + ["after"]


async def test_own_posts_are_not_sent_back_by_a_repair(start) -> None:
    bus = f"repair-{uuid.uuid4().hex[:8]}"
    here = GatedBackplane(bus)
    a = await start("aiohttp", backplane=here)
    await start("aiohttp", backplane=GatedBackplane(bus))
    async with aiohttp.ClientSession() as session:
        alice, carol = await connect_peer(session, a, "alice"), await connect_peer(session, a, "carol")
        for p in (alice, carol):
            await p.join("lobby")
        here.drop()                   # a's subscription is down; its posts still store
        await alice.post("lobby", "mine")
        await here.restore()
        assert (await carol.next("message"))["content"] == "mine"
        await carol.post("lobby", "reply")  # alice's next message is carol's, not her own
        assert (await alice.next("message"))["content"] == "reply"
        assert [m["content"] for m in alice.messages] == ["reply"]


async def test_a_join_that_read_further_than_the_bus_got_is_not_sent_it_twice(start) -> None:
    async with aiohttp.ClientSession() as session:
        a, alice, bob = await _quietly_behind(session, start, "aiohttp",
                                              [f"m{i}" for i in range(3)])
        dave = await connect_peer(session, a, "dave")
        # dave's join reads the 3 posts a never heard: dave has them from his join,
        # alice gets them from the repair the join set off, each once
        joined = await dave.join("lobby")
        assert joined["offset"] == 3
        await bob.post("lobby", "m3")
        while len(alice.messages) < 4:
            await alice.next("message")
        assert [m["content"] for m in alice.messages] == ["m0", "m1", "m2", "m3"]
        assert (await dave.next("message"))["content"] == "m3"
        assert dave.messages == [dave.messages[-1]]
