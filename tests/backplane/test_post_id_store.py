"""Post ids in every store: memory://, fakeredis (its Lua) and a real Redis.

The rules are those of tests/core/test_post_id_rules.py (the in-process store); here
they are held against the append script, one post at a time and in runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

import wskit.backplane.scripts
import wskit.core.history
from wskit.backplane import from_url
from wskit.backplane.base import Broker, RoomPost
from wskit.core.history import Repeat, Retention, once_token

pytestmark = pytest.mark.timeout(30)
KEEP = Retention(size=3, ttl=60)


@pytest.fixture(params=["memory", "store"])
async def broker(request: pytest.FixtureRequest, backplane_url: str) -> AsyncIterator[Broker]:
    url = f"memory://ids-{uuid.uuid4().hex[:8]}" if request.param == "memory" else backplane_url
    bus = from_url(url)
    assert isinstance(bus, Broker)
    async with bus:
        yield bus


def _key() -> str:
    return f"tids-{uuid.uuid4().hex[:10]}"


async def _heard(bus: Broker, channel: str) -> asyncio.Queue[str]:
    got: asyncio.Queue[str] = asyncio.Queue()
    bus.on_message = lambda _ch, data: got.put_nowait(data)
    await bus.subscribe(channel)
    return got


async def test_a_repeat_gets_the_first_offset_and_is_neither_stored_nor_published(broker) -> None:
    key = _key()
    heard = await _heard(broker, key)
    first = await broker.append(key, key, "o", '{"n":1}', KEEP, once_token("alice", "p1"))
    again = await broker.append(key, key, "o", '{"n":1}', KEEP, once_token("alice", "p1"))
    assert isinstance(again, Repeat) and tuple(again) == tuple(first)
    # a marker after the repeat: the one envelope heard before it is the first post's
    await broker.append(key, key, "o", '{"n":"end"}', KEEP)
    envelopes = [await asyncio.wait_for(heard.get(), 5) for _ in range(2)]
    assert '"n":1' in envelopes[0] and '"end"' in envelopes[1]
    page = await broker.read(key, KEEP, after=0)
    assert page.top == 2 and [e.offset for e in page.entries] == [1, 2]


async def test_ids_are_per_user(broker) -> None:
    key = _key()
    a = await broker.append(key, key, "o", "{}", KEEP, once_token("alice", "same"))
    b = await broker.append(key, key, "o", "{}", KEEP, once_token("bob", "same"))
    assert not isinstance(b, Repeat) and b[0] == a[0] + 1


async def test_a_run_with_a_repeat_inside_it_stores_the_others_in_order(broker) -> None:
    key = _key()
    await broker.append(key, key, "o", '{"n":0}', KEEP, once_token("alice", "x"))
    run = [RoomPost(key, "o", '{"n":1}', key, KEEP, once_token("alice", "y")),
           RoomPost(key, "o", '{"n":0}', key, KEEP, once_token("alice", "x")),
           RoomPost(key, "o", '{"n":2}', key, KEEP),
           RoomPost(key, "o", '{"n":1}', key, KEEP, once_token("alice", "y"))]
    sent = await broker.send(run)
    epoch = sent[0][1]  # type: ignore[index]
    assert sent == [(2, epoch), Repeat(1, epoch), (3, epoch), Repeat(2, epoch)]
    assert [type(s) for s in sent] == [tuple, Repeat, tuple, Repeat]
    page = await broker.read(key, KEEP, after=0)
    assert [e.offset for e in page.entries] == [1, 2, 3]


async def test_an_id_is_forgotten_once_its_post_left_the_history_and_the_window_passed(
        broker, monkeypatch) -> None:
    monkeypatch.setattr(wskit.backplane.scripts, "ID_WINDOW", 0.0)
    monkeypatch.setattr(wskit.core.history, "ID_WINDOW", 0.0)
    key = _key()
    await broker.append(key, key, "o", "{}", KEEP, once_token("alice", "old"))
    # still retained (one of the last 3): remembered even with no window
    for i in range(2):
        await broker.append(key, key, "o", "{}", KEEP, once_token("bob", f"b{i}"))
    assert isinstance(await broker.append(key, key, "o", "{}", KEEP,
                                          once_token("alice", "old")), Repeat)
    for i in range(2, 5):
        await broker.append(key, key, "o", "{}", KEEP, once_token("bob", f"b{i}"))
    again = await broker.append(key, key, "o", "{}", KEEP, once_token("alice", "old"))
    assert not isinstance(again, Repeat) and again[0] == 7


async def test_an_id_outlives_its_post_within_the_window(broker) -> None:
    key = _key()
    await broker.append(key, key, "o", "{}", KEEP, once_token("alice", "p"))
    for i in range(10):
        await broker.append(key, key, "o", "{}", KEEP, once_token("bob", f"b{i}"))
    repeat = await broker.append(key, key, "o", "{}", KEEP, once_token("alice", "p"))
    assert isinstance(repeat, Repeat) and repeat.offset == 1
