"""Post ids end to end: a repeat is answered with the first ``sent``, delivered once.

The store's rules are specified in tests/core/test_post_id_rules.py and held against
every backplane in tests/backplane/test_post_id_store.py; here, real servers and
clients, and the retry that ids exist for: a sender whose connection is cut
while its posts are in flight.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from polling import until

from wskit.core.reconnect import Backoff
from wskit.devtools.deploy import IdleRelay

pytestmark = pytest.mark.timeout(30)



async def _pair(start, clients, framework: str, **settings: Any):
    srv = await start(framework, **settings)
    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    await alice.join("lobby")
    await bob.join("lobby")
    return srv, alice, bob


@pytest.mark.parametrize("where", ["standalone", "backplane"])
async def test_a_repeated_post_is_answered_with_the_first_sent_and_delivered_once(
        start, clients, framework, backplane_url, where) -> None:
    bus = "none" if where == "standalone" else backplane_url
    _, alice, bob = await _pair(start, clients, framework, backplane=bus)
    first = await alice.send("lobby", "once", id="p-1")
    again = await alice.send("lobby", "once", id="p-1")
    assert first["offset"] == again["offset"] and first["id"] == again["id"] == "p-1"
    await alice.send("lobby", "end")
    got = [await bob.receive(), await bob.receive()]
    assert [(f["content"], f["id"], f["offset"]) for f in got] == [
        ("once", "p-1", first["offset"]), ("end", got[1]["id"], first["offset"] + 1)]
    assert bob.drain() == []


async def test_the_same_id_from_another_user_is_another_post(start, clients, framework) -> None:
    _, alice, bob = await _pair(start, clients, framework)
    a = await alice.send("lobby", "from alice", id="same")
    b = await bob.send("lobby", "from bob", id="same")
    assert b["offset"] == a["offset"] + 1
    assert (await bob.receive())["content"] == "from alice"
    assert (await alice.receive())["content"] == "from bob"


async def test_a_post_without_an_id_still_gets_one_from_the_server(start, clients,
                                                                   framework) -> None:
    _, alice, bob = await _pair(start, clients, framework)
    await alice.send_raw({"type": "message", "roomId": "lobby", "content": "x", "ref": 1})
    await alice.send_raw({"type": "message", "roomId": "lobby", "content": "x", "ref": 2})
    sent = [await alice.receive(), await alice.receive()]
    assert sent[0]["id"] and sent[0]["id"] != sent[1]["id"]
    assert sent[1]["offset"] == sent[0]["offset"] + 1  # no id: never a repeat
    assert [f["id"] for f in (await bob.receive(), await bob.receive())] == [
        s["id"] for s in sent]


async def test_with_history_off_an_id_is_passed_through_only(start, clients,
                                                             framework) -> None:
    _, alice, bob = await _pair(start, clients, framework, history_size=0)
    await alice.send("lobby", "one", id="p")
    await alice.send("lobby", "one", id="p")  # documented: no store, no dedupe
    assert [(await bob.receive())["id"] for _ in range(2)] == ["p", "p"]


@pytest.mark.timeout(90)
async def test_posts_retried_across_twenty_cuts_arrive_exactly_once(
        start, clients, backplane_url) -> None:
    """1,000 posts from four tasks of one client whose connection is cut 20 times at
    random moments: each post reaches each receiver, on both frameworks, once."""
    a = await start("aiohttp", backplane=backplane_url, instance_name="a")
    b = await start("fastapi", backplane=backplane_url, instance_name="b")
    receivers = [await clients(s, user=f"r{i}") for i, s in enumerate((a, b))]
    for r in receivers:
        await r.join("room")
    relay = await IdleRelay(("127.0.0.1", a.port), idle_timeout=None).start()
    try:
        sender = await clients(f"ws://{relay.address}/ws", user="s", reconnect=True,
                               backoff=Backoff(base=0.01, cap=0.05), timeout=10)
        await sender.join("room")
        total, tasks_n = 1000, 4
        acks: list[dict[str, Any]] = []
        rng = random.Random(26)
        cuts_at = sorted(rng.sample(range(20, total - 20), 20))

        async def post(task: int) -> None:
            for n in range(total // tasks_n):
                acks.append(await sender.send("room", f"{task}:{n}"))

        async def cutter() -> None:
            for at in cuts_at:
                await until(lambda: len(acks) >= at, timeout=60)
                before = sender.reconnects
                relay.cut()
                relay.mend()
                await until(lambda: sender.reconnects > before, timeout=20)

        await asyncio.wait_for(asyncio.gather(cutter(), *(post(t) for t in range(tasks_n))), 75)
        assert sender.reconnects >= 20
        assert len(acks) == total
        offsets = [ack["offset"] for ack in acks]
        assert len(set(offsets)) == total, "two posts were given one offset"
        want = {f"{t}:{n}" for t in range(tasks_n) for n in range(total // tasks_n)}
        for r in receivers:
            got: Counter[str] = Counter()
            while len(got) < total:
                got[(await r.receive(timeout=15))["content"]] += 1
            assert set(got) == want and max(got.values()) == 1
            assert r.drain() == []
    finally:
        await relay.stop()
