"""History, offsets and recovery, specified without sockets (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from wskit import ChatServer
from wskit.core.history import MemoryStreams, Retention, is_recovered
from wskit.testing.memory import GatedBackplane, Peer

pytestmark = pytest.mark.timeout(20)


async def peer(server: ChatServer, user: str) -> Peer:
    return await Peer(server, user).connect()


async def post(p: Peer, room: str, text: str) -> dict[str, Any]:
    reply = await p.request({"type": "message", "roomId": room, "content": text, "ref": text})
    assert reply["type"] == "sent", reply
    return reply


async def take(p: Peer, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        frame = await p.recv()
        if frame["type"] == "message":
            frames.append(frame)
    return frames


BACKPLANES = ["none", "gated"]


def backplane(kind: str) -> Any:
    return "none" if kind == "none" else GatedBackplane()


@pytest.mark.parametrize("kind", BACKPLANES)
async def test_offsets_count_per_room_from_one(make_server, kind: str) -> None:
    server = await make_server(backplane=backplane(kind))
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    for p in (alice, bob):
        joined = await p.request({"type": "join", "roomId": "a"})
        assert joined["offset"] == 0 and isinstance(joined["epoch"], str)
    await bob.request({"type": "join", "roomId": "b"})
    acks = [await post(alice, "a", f"a{i}") for i in range(3)]
    got = await take(bob, 3)
    assert [(m["content"], m["offset"]) for m in got] == [("a0", 1), ("a1", 2), ("a2", 3)]
    acks.append(await post(bob, "b", "b0"))
    assert [a["offset"] for a in acks] == [1, 2, 3, 1]
    assert alice.unread() == []  # never its own posts


@pytest.mark.parametrize("kind", BACKPLANES)
async def test_rejoin_with_since_gets_exactly_what_was_missed(make_server, kind: str) -> None:
    server = await make_server(backplane=backplane(kind))
    alice = await peer(server, "alice")
    bob = await peer(server, "bob")
    joined = await bob.request({"type": "join", "roomId": "r"})
    await alice.request({"type": "join", "roomId": "r"})
    await post(alice, "r", "seen")
    assert (await take(bob, 1))[0]["offset"] == 1
    await bob.leave()  # bob drops; three posts later he is back
    for i in range(3):
        await post(alice, "r", f"missed{i}")
    bob2 = await peer(server, "bob")
    rejoined = await bob2.request({"type": "join", "roomId": "r",
                                   "since": {"offset": 1, "epoch": joined["epoch"]}})
    assert rejoined["recovered"] is True and rejoined["offset"] == 4
    assert rejoined["epoch"] == joined["epoch"]
    got = await take(bob2, 3)  # replayed after joined, in order
    assert [(m["content"], m["offset"]) for m in got] == [
        ("missed0", 2), ("missed1", 3), ("missed2", 4)]
    await post(alice, "r", "live")
    assert [(m["content"], m["offset"]) for m in await take(bob2, 1)] == [("live", 5)]


@pytest.mark.parametrize("kind", BACKPLANES)
async def test_more_missed_than_retained_is_not_recovered(make_server, kind: str) -> None:
    server = await make_server(backplane=backplane(kind), history_size=5)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    joined = await bob.request({"type": "join", "roomId": "r"})
    await alice.request({"type": "join", "roomId": "r"})
    await bob.leave()
    for i in range(20):
        await post(alice, "r", f"m{i}")
    bob2 = await peer(server, "bob")
    rejoined = await bob2.request({"type": "join", "roomId": "r",
                                   "since": {"offset": 0, "epoch": joined["epoch"]}})
    assert rejoined["recovered"] is False
    assert [m["offset"] for m in await take(bob2, 5)] == [16, 17, 18, 19, 20]  # what is kept


async def test_another_epoch_is_not_recovered_and_replays_nothing(make_server) -> None:
    server = await make_server()
    alice = await peer(server, "alice")
    await alice.request({"type": "join", "roomId": "r"})
    await post(alice, "r", "x")
    bob = await peer(server, "bob")
    rejoined = await bob.request({"type": "join", "roomId": "r",
                                  "since": {"offset": 0, "epoch": "from-another-life"}})
    assert rejoined["recovered"] is False and rejoined["offset"] == 1
    bob.send({"type": "ping", "ref": "fence"})
    assert await bob.recv() == {"type": "pong", "ref": "fence"}


async def test_a_post_between_subscribe_and_read_is_delivered_once(make_server) -> None:
    """The history-to-live switch: a post lands while the rejoin's history read is
    held; it is in the history the read returns *and* arrives live: exactly once."""
    here_bp, there_bp = GatedBackplane("bus-r"), GatedBackplane("bus-r")
    here, there = await make_server(backplane=here_bp), await make_server(backplane=there_bp)
    poster = await peer(there, "poster")
    joined = await poster.request({"type": "join", "roomId": "r"})
    await post(poster, "r", "one")
    bob = await peer(here, "bob")
    gate = here_bp.hold("read")
    bob.send({"type": "join", "roomId": "r", "ref": "j",
              "since": {"offset": 0, "epoch": joined["epoch"]}})
    await gate.arrived()  # subscribed, buffering, about to read
    await post(poster, "r", "two")  # published to here (buffered) and stored
    await post(poster, "r", "three")
    here_bp.open("read")
    rejoined = await bob.recv()
    assert rejoined["type"] == "joined" and rejoined["recovered"] is True
    got = await take(bob, 3)
    assert [m["offset"] for m in got] == [1, 2, 3]
    await post(poster, "r", "four")
    assert [m["offset"] for m in await take(bob, 1)] == [4]
    bob.send({"type": "ping", "ref": "fence"})
    assert await bob.recv() == {"type": "pong", "ref": "fence"}  # no duplicate anywhere


@pytest.mark.parametrize("kind", BACKPLANES)
async def test_history_request_gives_the_last_k_oldest_first(make_server, kind: str) -> None:
    server = await make_server(backplane=backplane(kind))
    alice = await peer(server, "alice")
    refused = await alice.request({"type": "history", "roomId": "r", "ref": 1})
    assert refused["code"] == "not_joined"
    await alice.request({"type": "join", "roomId": "r"})
    for i in range(7):
        await post(alice, "r", f"m{i}")
    page = await alice.request({"type": "history", "roomId": "r", "limit": 3, "ref": 2})
    assert page["type"] == "history" and page["offset"] == 7
    assert [(m["content"], m["offset"]) for m in page["messages"]] == [
        ("m4", 5), ("m5", 6), ("m6", 7)]


async def test_history_off_means_no_offsets(make_server) -> None:
    server = await make_server(history_size=0)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    for p in (alice, bob):
        assert "offset" not in await p.request({"type": "join", "roomId": "r"})
    assert "offset" not in await post(alice, "r", "x")
    assert "offset" not in (await take(bob, 1))[0]
    refused = await alice.request({"type": "history", "roomId": "r", "ref": 1})
    assert refused["code"] == "history_unavailable"


async def test_post_during_outage_is_local_without_offset(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    for p in (alice, bob):
        await p.request({"type": "join", "roomId": "r"})
    bp.drop()
    reply = await post(alice, "r", "down")
    assert reply["partial"]["code"] == "backplane_unavailable" and "offset" not in reply
    got = (await take(bob, 1))[0]
    assert got["content"] == "down" and "offset" not in got


# -- the store itself ----------------------------------------------------------------

def test_idle_history_expires_into_a_new_epoch() -> None:
    streams, keep = MemoryStreams(), Retention(size=10, ttl=60)
    offset, epoch = streams.append("r", '{"a":1}', keep, now=0)
    assert offset == 1
    assert streams.read("r", keep, now=59).epoch == epoch  # touched: alive
    later = streams.read("r", keep, now=59 + 61)  # idle longer than the TTL
    assert later.epoch != epoch and later.top == 0
    assert not is_recovered(later, 1, epoch)
    assert streams.append("r", '{"a":2}', keep, now=200)[0] == 1


def test_reading_a_room_without_history_stores_nothing_and_agrees_with_its_first_post() -> None:
    streams, keep = MemoryStreams(), Retention(size=10, ttl=60)
    pages = [streams.read("r", keep, now=t) for t in (0, 10, 59)]
    assert {(p.epoch, p.top, p.oldest) for p in pages} == {(pages[0].epoch, 0, 1)}
    assert streams._rooms == {}  # a thousand joins of empty rooms hold nothing
    assert streams.append("r", '{"a":1}', keep, now=30) == (1, pages[0].epoch)
