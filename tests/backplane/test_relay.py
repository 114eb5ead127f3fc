"""The relay turns envelopes into typed :class:`Inbound` events (socket-free)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from wskit.backplane import MemoryBackplane
from wskit.core import envelope
from wskit.server.relay import Inbound, Relay

pytestmark = pytest.mark.timeout(20)


async def test_envelopes_become_typed_events() -> None:
    bus = f"relay-{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[Inbound] = asyncio.Queue()
    relay = Relay(MemoryBackplane(bus), "here-1", "ns", got.put_nowait)
    other = MemoryBackplane(bus)
    await relay.start()
    await other.start()
    try:
        relay.room_opened("r")
        relay.user_arrived("bob")
        await relay.settle()
        presence = '{"type":"presence","event":"join","roomId":"r","userId":"alice"}'
        post = '{"type":"message","roomId":"r","userId":"alice","content":"hi"}'
        await other.publish("ns:room:r", envelope.encode("there-2", presence))
        await other.publish("ns:room:r", envelope.encode("here-1/c7", post, 3, "0a0b0c0d"))
        await other.publish("ns:room:r", envelope.encode("here-1", post))  # ours, no offset
        await other.publish("ns:user:bob", envelope.encode("there-2", '{"type":"direct"}'))
        await other.publish("ns:room:r", '{"origin":"x","frame":[]}')  # malformed: dropped
        await other.publish("ns:room:r", envelope.encode("there-2", post, 4, "0a0b0c0d"))
        events = [await asyncio.wait_for(got.get(), 5) for _ in range(4)]
    finally:
        await other.stop()
        await relay.stop()
    assert events == [
        Inbound("presence", "r", presence, whose="alice"),
        Inbound("room", "r", envelope.with_offset(post, 3, "0a0b0c0d"), 3, sender="c7",
                epoch="0a0b0c0d"),
        Inbound("user", "bob", '{"type":"direct"}'),
        Inbound("room", "r", envelope.with_offset(post, 4, "0a0b0c0d"), 4, epoch="0a0b0c0d"),
    ]
    assert got.empty()


async def test_an_envelope_forged_with_this_instances_origin_never_reaches_a_client() -> None:
    """The instance id is public (welcome, /healthz): anyone who can PUBLISH can
    write it, so the fast path for our own envelopes still checks the frame."""
    bus = f"relay-{uuid.uuid4().hex[:8]}"
    got: asyncio.Queue[Inbound] = asyncio.Queue()
    relay = Relay(MemoryBackplane(bus), "here-1", "ns", got.put_nowait)
    other = MemoryBackplane(bus)
    await relay.start()
    await other.start()
    post = '{"type":"message","roomId":"r","userId":"alice","content":"hi"}'
    forged = [
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":"x"} NOT JSON <b>}}',
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":"x"},"more":{}}',
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":"m","offset":99}}',
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":"m","epoch":"ff"}}',
        '{"origin":"here-1/c7","offset":3,"epoch":"0a0b0c0d","frame":{"type":1}}',
    ]
    try:
        relay.room_opened("r")
        await relay.settle()
        for data in forged:
            await other.publish("ns:room:r", data)
        await other.publish("ns:room:r", envelope.encode("here-1/c7", post, 4, "0a0b0c0d"))
        event = await asyncio.wait_for(got.get(), 5)  # the bus keeps order: the rest came first
    finally:
        await other.stop()
        await relay.stop()
    assert event == Inbound("room", "r", envelope.with_offset(post, 4, "0a0b0c0d"), 4,
                            sender="c7", epoch="0a0b0c0d")
    assert got.empty()
