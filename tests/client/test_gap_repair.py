"""A gap while connected is repaired: the client fetches exactly what it missed.

An instance whose backplane subscription was down (a listener outage) never hears
what other instances published meanwhile; its clients see the next offset jump
(here ``room_repair`` is off: the server would otherwise replay them itself,
tests/server/test_room_repair.py). wskit.Client holds what comes after the jump,
reads the missing range (``history`` with ``after``) and hands everything over in
offset order, without reconnecting.
The rules themselves are specified in tests/core/test_tracker.py.
"""

from __future__ import annotations

import uuid

import pytest

from wskit.testing import GatedBackplane

pytestmark = pytest.mark.timeout(60)


async def test_posts_lost_in_a_listener_outage_reach_a_connected_client_in_order(
        start, clients, framework) -> None:
    bus = f"gap-{uuid.uuid4().hex[:8]}"
    here = GatedBackplane(bus)
    a = await start(framework, backplane=here, history_size=200,  # keeps all 102 posts
                    room_repair=False)
    b = await start("aiohttp", backplane=GatedBackplane(bus), history_size=200)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    await bob.send("lobby", "before")
    assert (await alice.expect("message"))["content"] == "before"

    here.drop()                                   # a's subscription is gone...
    for i in range(100):
        await bob.send("lobby", f"during {i}")    # ...so a never hears these
    await here.restore()
    await bob.send("lobby", "after")              # the jump in offsets shows the gap

    got = [await alice.expect("message", timeout=10) for _ in range(101)]
    assert [m["content"] for m in got] == [f"during {i}" for i in range(100)] + ["after"]
    offsets = [m["offset"] for m in got]
    assert offsets == list(range(offsets[0], offsets[0] + 101))
    assert alice.reconnects == 0 and alice.repairs == 1 and alice.lost == []
    assert not [f for f in alice.drain() if f.get("type") in ("message", "gap")]


async def test_what_the_history_no_longer_holds_is_announced_as_a_gap(start, clients) -> None:
    bus = f"gap-{uuid.uuid4().hex[:8]}"
    here = GatedBackplane(bus)
    a = await start("fastapi", backplane=here, history_size=10, room_repair=False)
    b = await start("aiohttp", backplane=GatedBackplane(bus), history_size=10)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    here.drop()
    for i in range(30):                           # more than the 10 the history keeps
        await bob.send("lobby", f"during {i}")
    await here.restore()
    await bob.send("lobby", "after")
    gap = await alice.expect("gap", timeout=10)
    assert gap["count"] == 21 and gap["missing"][1] - gap["missing"][0] == 20
    got = [await alice.expect("message", timeout=10) for _ in range(10)]
    assert [m["content"] for m in got] == [f"during {i}" for i in range(21, 30)] + ["after"]
    assert alice.lost == ["lobby"]


async def test_a_senders_own_posts_are_no_gap(start, clients, framework) -> None:
    srv = await start(framework)
    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    for i in range(20):
        await (alice if i % 2 else bob).send("lobby", f"m{i}")
    seen = [await alice.expect("message") for _ in range(10)]
    assert [m["content"] for m in seen] == [f"m{i}" for i in range(0, 20, 2)]
    assert alice.repairs == 0 and bob.repairs == 0
