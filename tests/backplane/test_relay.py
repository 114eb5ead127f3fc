"""The relay turns envelopes into typed :class:`Inbound` events (socket-free)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from wskit.backplane import MemoryBackplane, RedisBackplane
from wskit.core import envelope
from wskit.core.history import Retention
from wskit.security.signing import Signer
from wskit.server.relay import Inbound, Relay

pytestmark = pytest.mark.timeout(20)


POST = '{"type":"message","roomId":"r","userId":"alice","content":"hi"}'
KEY = "a-shared-key-for-tests-0123456789"


async def _heard(relay: Relay, other: MemoryBackplane, got: asyncio.Queue[Inbound],
                 publish: list[tuple[str, str]], n: int) -> list[Inbound]:
    """Publish ``publish`` from ``other``, then a signed marker post; the events
    before the marker (the bus keeps order, so nothing else can follow it)."""
    relay.room_opened("r")
    await relay.settle()
    for channel, data in publish:
        await other.publish(channel, data)
    marker = '{"type":"message","content":"marker"}'
    await other.publish("ns:room:r", envelope.encode(
        "there-9", marker, 999, "0a0b0c0d", relay.signer.sign("ns:room:r", marker)
        if relay.signer.shared else ""))
    events = []
    while True:
        event = await asyncio.wait_for(got.get(), 5)
        if event.offset == 999:
            break
        events.append(event)
    assert len(events) == n, events
    return events


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Relay, MemoryBackplane, asyncio.Queue[Inbound]]]:
    bus = f"relay-{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[Inbound] = asyncio.Queue()
    relay = Relay(MemoryBackplane(bus), "here-1", "ns", got.put_nowait)
    other = MemoryBackplane(bus)
    await relay.start()
    await other.start()
    yield relay, other, got
    await other.stop()
    await relay.stop()


async def test_envelopes_become_typed_events(pair: Any) -> None:
    relay, other, got = pair
    relay.user_arrived("bob")
    presence = '{"type":"presence","event":"join","roomId":"r","userId":"alice"}'
    mine = relay.signer.sign("ns:room:r", POST)
    events = await _heard(relay, other, got, [
        ("ns:room:r", envelope.encode("there-2", presence)),
        ("ns:room:r", envelope.encode("here-1/c7", POST, 3, "0a0b0c0d", mine)),
        ("ns:room:r", envelope.encode("here-1", POST, sig=mine)),  # ours, no offset
        ("ns:user:bob", envelope.encode("there-2", '{"type":"direct"}')),
        ("ns:room:r", '{"origin":"x","frame":[]}'),  # malformed: dropped
        ("ns:room:r", envelope.encode("there-2", POST, 4, "0a0b0c0d")),
    ], 4)
    assert events == [
        Inbound("presence", "r", presence, whose="alice"),
        Inbound("room", "r", envelope.with_offset(POST, 3, "0a0b0c0d"), 3, sender="c7",
                epoch="0a0b0c0d"),
        Inbound("user", "bob", '{"type":"direct"}'),
        Inbound("room", "r", envelope.with_offset(POST, 4, "0a0b0c0d"), 4, epoch="0a0b0c0d"),
    ]
    assert relay.refused == 1


async def test_an_envelope_forged_with_this_instances_origin_never_reaches_a_client(
        pair: Any) -> None:
    """The instance id is public (welcome, /healthz): anyone who can PUBLISH can
    write it. Only this instance's signature makes an envelope its own: a
    well-formed post from alice, unsigned, wrongly signed, or signed for another
    room, is dropped; so is junk."""
    relay, other, got = pair
    sig = relay.signer.sign("ns:room:r", POST)
    elsewhere = relay.signer.sign("ns:room:other", POST)
    forged = [
        envelope.encode("here-1/c7", POST, 3, "0a0b0c0d"),  # well formed, unsigned
        envelope.encode("here-1/c7", POST, 3, "0a0b0c0d", "f" * 32),  # a wrong signature
        envelope.encode("here-1/c7", POST, 3, "0a0b0c0d", elsewhere),  # another room's
        envelope.encode("here-1/c7", POST.replace("hi", "bye"), 3, "0a0b0c0d", sig),
        envelope.encode("here-1", POST),  # no offset, unsigned: not ours either
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":"x"} NOT JSON}}',
        '{"frame":{"type":"message","content":"x"},"offset":3,"epoch":"ab","origin":"here-1"}',
    ]
    events = await _heard(relay, other, got, [("ns:room:r", data) for data in forged], 0)
    assert events == [] and relay.refused == len(forged)
    ok = await _heard(relay, other, got, [
        ("ns:room:r", envelope.encode("here-1/c7", POST, 4, "0a0b0c0d", sig))], 1)
    assert ok == [Inbound("room", "r", envelope.with_offset(POST, 4, "0a0b0c0d"), 4,
                          sender="c7", epoch="0a0b0c0d")]


async def test_with_a_shared_key_only_its_signatures_pass() -> None:
    """``backplane_key``: another instance's signed envelope is trusted (spliced,
    not parsed); an unsigned one, even well formed, is dropped, on rooms and users."""
    bus = f"relay-{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[Inbound] = asyncio.Queue()
    relay = Relay(MemoryBackplane(bus), "here-1", "ns", got.put_nowait, Signer(KEY))
    other = MemoryBackplane(bus)
    peer = Signer(KEY)  # another instance with the key
    await relay.start()
    await other.start()
    try:
        relay.user_arrived("bob")
        direct = '{"type":"direct","from":"alice","content":"hi"}'
        events = await _heard(relay, other, got, [
            ("ns:room:r", envelope.encode("there-2/c1", POST, 5, "0a0b0c0d")),
            ("ns:room:r", envelope.encode("there-2/c1", POST, 5, "0a0b0c0d", "0" * 32)),
            ("ns:user:bob", envelope.encode("there-2", direct)),
            ("ns:user:bob", envelope.encode("there-2", direct,
                                            sig=peer.sign("ns:room:r", direct))),
            ("ns:room:r", envelope.encode("there-2/c1", POST, 6, "0a0b0c0d",
                                          peer.sign("ns:room:r", POST))),
            ("ns:user:bob", envelope.encode("there-2", direct,
                                            sig=peer.sign("ns:user:bob", direct))),
        ], 2)
    finally:
        await other.stop()
        await relay.stop()
    assert events == [
        Inbound("room", "r", envelope.with_offset(POST, 6, "0a0b0c0d"), 6, epoch="0a0b0c0d"),
        Inbound("user", "bob", direct),
    ]
    assert relay.refused == 4


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Signer("short")


async def test_history_entries_are_checked_like_envelopes(backplane_url: str) -> None:
    """Whoever can write Redis can XADD to a room's stream: without a key, a
    malformed entry is left out (its offset is then lost, visibly), a well-formed one
    of another writer kept; with a shared key, only its signed entries are kept."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    retention = Retention(20, 60)
    bp = RedisBackplane(backplane_url)
    plain = Relay(bp, "here-1", ns, lambda _: None)
    keyed = Relay(bp, "here-2", ns, lambda _: None, Signer(KEY))
    await plain.start()
    try:
        stream = f"{plain.history_key('r')}:stream"
        plain.post_room("r", POST, "c1", retention, lambda _: None)  # signed by plain
        await plain.idle()
        channel = keyed.room_channel("r")
        for offset, text, sig in [
                (2, "NOT JSON <script>", ""),
                (3, '{"type":"message","content":"unsigned"}', ""),
                (4, POST, keyed.signer.sign(channel, POST)),
                (5, POST, "f" * 32)]:
            await bp.client.xadd(stream, {"d": text, "g": sig}, id=f"{offset}-0")
        await bp.client.hset(f"{plain.history_key('r')}:meta", "s", 5)
        mine = await plain.read_room("r", retention, after=0)
        theirs = await keyed.read_room("r", retention, after=0)
    finally:
        await bp.client.delete(*(f"{plain.history_key('r')}:{k}" for k in ("meta", "stream")))
        await plain.stop()
    assert [e.offset for e in mine.entries] == [1, 3, 4, 5]  # the junk left out
    assert [e.offset for e in theirs.entries] == [4]  # only the key's
    assert mine.top == theirs.top == 5 and plain.refused == 1 and keyed.refused == 4
