"""ChatServer specified without sockets: frames in, frames out, races made deterministic.

Every test drives the real ChatServer through wskit.testing.memory's MemoryTransport and
GatedBackplane. A race test holds a backplane call at a gate, interleaves the
other event, releases, and then checks the state at quiescence.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit import ChatServer
from wskit.core.protocol import CloseCode
from wskit.testing.memory import GatedBackplane, Peer

pytestmark = pytest.mark.timeout(20)


async def peer(server: ChatServer, user: str) -> Peer:
    return await Peer(server, user).connect()


def subscribed_ok(server: ChatServer) -> None:
    """At quiescence the backend's subscriptions are exactly the local rooms and users."""
    relay = server.relay
    assert relay is not None and isinstance(relay.backplane, GatedBackplane)
    want = ({relay.room_channel(r) for r in server.hub.rooms()}
            | {relay.user_channel(u) for u in server.hub.users()})
    assert relay.backplane.channels == want
    assert relay.backplane.subscribed == want


# -- tables: one frame in, the one reply out ------------------------------------

DEEP = "[" * 30_000
DEEP_OBJ = '{"a":' * 5_000 + "1" + "}" * 5_000

TABLE: list[tuple[str, dict[str, Any]]] = [
    ('{"type":"ping","ref":1}', {"type": "pong", "ref": 1}),
    ('{"type":"ping","ref":"a"}', {"type": "pong", "ref": "a"}),
    ("not json", {"type": "error", "code": "invalid_json"}),
    (DEEP, {"type": "error", "code": "invalid_json"}),
    # invalid_json where json's C scanner hits the recursion limit (3.10-3.12); 3.13
    # parses it and the frame is refused for its content (missing 'type')
    (DEEP_OBJ, {"type": "error"}),
    ("[1, 2]", {"type": "error", "code": "not_an_object"}),
    ('{"roomId":"r"}', {"type": "error", "code": "missing_field"}),
    ('{"type":7}', {"type": "error", "code": "wrong_type"}),
    ('{"type":"dance","ref":3}', {"type": "error", "code": "unknown_type", "ref": 3}),
    ('{"type":"join","roomId":"a b","ref":"x"}',
     {"type": "error", "code": "invalid_value", "ref": "x"}),
    ('{"type":"join","roomId":"r","ref":true}', {"type": "error", "code": "wrong_type"}),
    ('{"type":"ping","ref":9007199254740992}', {"type": "error", "code": "invalid_value"}),
    ('{"type":"ping","ref":"' + "r" * 65 + '"}', {"type": "error", "code": "invalid_value"}),
    ('{"type":"join","roomId":"r","ref":"\\ud800"}', {"type": "error", "code": "invalid_value"}),
    ('{"type":"message","roomId":"r","content":"\\udfff","ref":4}',
     {"type": "error", "code": "invalid_value", "ref": 4}),
    ('{"type":"message","roomId":"r","content":"hi","ref":5}',
     {"type": "error", "code": "not_joined", "ref": 5}),
    ('{"type":"leave","roomId":"r","ref":6}', {"type": "error", "code": "not_joined", "ref": 6}),
    ('{"type":"join","roomId":"r","ref":7}', {"type": "joined", "roomId": "r", "ref": 7}),
    ('{"type":"direct","to":"nobody","content":"hi","ref":8}',
     {"type": "error", "code": "user_offline", "ref": 8}),
    ('{"type":"ping","ref":1' + "0" * 5000 + "}", {"type": "error", "code": "invalid_json"}),
]


@pytest.mark.parametrize("text, expected", TABLE, ids=[t[:30] for t, _ in TABLE])
async def test_one_frame_one_reply(make_server, text: str, expected: dict[str, Any]) -> None:
    server = await make_server()
    p = await peer(server, "alice")
    p.send(text)
    p.send('{"type":"ping","ref":"fence"}')  # everything before it has been answered
    reply = await p.recv()
    assert {k: reply.get(k) for k in expected} == expected, reply
    assert await p.recv() == {"type": "pong", "ref": "fence"}
    assert not p.transport.closed.is_set()


async def test_pong_is_not_answered(make_server) -> None:
    server = await make_server()
    p = await peer(server, "alice")
    p.send('{"type":"pong","ref":1}')
    p.send('{"type":"ping","ref":"fence"}')
    assert await p.recv() == {"type": "pong", "ref": "fence"}


@pytest.mark.parametrize("frame, code", [
    (b"\x00binary", CloseCode.UNSUPPORTED_DATA),
])
async def test_documented_closes(make_server, frame: bytes, code: int) -> None:
    server = await make_server()
    p = await peer(server, "alice")
    p.send(frame)
    await p.finished()
    assert p.transport.close_code == code


async def test_bad_token_closes_4001(make_server) -> None:
    server = await make_server()
    p = Peer(server, "")
    with pytest.raises(ConnectionError):
        await p.connect()
    assert p.transport.close_code == CloseCode.UNAUTHORIZED


# -- direct messages --------------------------------------------------------------

async def test_direct_to_offline_user_from_two_tabs_is_user_offline(make_server) -> None:
    """Fault 6: the sender's own other tab used to count as "reached"."""
    server = await make_server()
    tab1, tab2 = await peer(server, "alice"), await peer(server, "alice")
    reply = await tab1.request({"type": "direct", "to": "nobody", "content": "hi", "ref": 1})
    assert reply["code"] == "user_offline"
    tab2.send('{"type":"ping","ref":"fence"}')
    assert await tab2.recv() == {"type": "pong", "ref": "fence"}  # no copy of a failed DM


async def test_direct_reaches_recipient_and_senders_other_tabs(make_server) -> None:
    server = await make_server()
    tab1, tab2, bob = (await peer(server, "alice"), await peer(server, "alice"),
                       await peer(server, "bob"))
    reply = await tab1.request({"type": "direct", "to": "bob", "content": "hi", "ref": 1})
    assert reply["type"] == "sent" and "partial" not in reply
    assert (await bob.recv())["content"] == "hi"
    assert (await tab2.recv())["content"] == "hi"


# -- one reply per ref, also during an outage (fault 7) -----------------------------

async def test_post_during_outage_gets_one_partial_reply(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, carol = await peer(server, "alice"), await peer(server, "carol")
    for p in (alice, carol):
        assert (await p.request({"type": "join", "roomId": "r"}))["type"] == "joined"
    bp.drop()
    reply = await alice.request({"type": "message", "roomId": "r", "content": "x", "ref": 1})
    assert reply["type"] == "sent" and reply["ref"] == 1
    assert reply["partial"]["code"] == "backplane_unavailable"
    assert (await carol.recv())["content"] == "x"
    alice.send('{"type":"ping","ref":"fence"}')
    assert await alice.recv() == {"type": "pong", "ref": "fence"}  # nothing in between


async def test_direct_during_outage_one_reply_each_way(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, carol = await peer(server, "alice"), await peer(server, "carol")
    bp.drop()
    away = await alice.request({"type": "direct", "to": "bob", "content": "?", "ref": 1})
    assert away["code"] == "backplane_unavailable" and away["ref"] == 1
    here = await alice.request({"type": "direct", "to": "carol", "content": "!", "ref": 2})
    assert here["type"] == "sent" and here["partial"]["code"] == "backplane_unavailable"
    alice.send('{"type":"ping","ref":"fence"}')
    assert await alice.recv() == {"type": "pong", "ref": "fence"}
    assert (await carol.recv())["content"] == "!"


# -- races, made deterministic -----------------------------------------------------

async def test_close_then_join_keeps_the_room_subscribed(make_server) -> None:
    """Fault 3: a close's unsubscribe, queued as a task, ran after a later join."""
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    await alice.request({"type": "join", "roomId": "r"})
    # alice's connection closes (the room empties) and, before anything else
    # runs, bob's join is handled: no await between the two
    alice.conn.close_soon(CloseCode.NORMAL)
    await server.handle_text(bob.conn, '{"type":"join","roomId":"r"}')
    await server.settled()
    await alice.finished()
    subscribed_ok(server)
    assert server.relay is not None
    assert server.relay.room_channel("r") in bp.subscribed


async def test_close_then_reconnect_keeps_the_user_subscribed(make_server) -> None:
    """Fault 3, users: a reload (close, then a new connection of the same user)."""
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    first = await peer(server, "alice")
    second = Peer(server, "alice")
    # the new connection's task is queued first, the close happens before it
    # runs: the new one is the user's first again, and anything the close left
    # for later would run after it
    second.start()
    first.conn.close_soon(CloseCode.NORMAL)
    await second.connect()
    await server.settled()
    subscribed_ok(server)
    assert server.relay is not None and server.relay.user_channel("alice") in bp.subscribed


async def test_join_while_subscription_is_held_waits_for_it(make_server) -> None:
    """A second joiner of a room whose subscription is not yet confirmed gets
    ``joined`` only once it is: every later post from elsewhere reaches it."""
    here_bp, there_bp = GatedBackplane("shared-bus"), GatedBackplane("shared-bus")
    here, there = await make_server(backplane=here_bp), await make_server(backplane=there_bp)
    a1, a2, remote = await peer(here, "a1"), await peer(here, "a2"), await peer(there, "b")
    await remote.request({"type": "join", "roomId": "r"})
    gate = here_bp.hold("apply")
    a1.send({"type": "join", "roomId": "r", "ref": 1})
    await gate.arrived()
    a2.send({"type": "join", "roomId": "r", "ref": 2})
    a2.send({"type": "ping", "ref": "fence"})
    # a2's join is waiting for the held subscription: nothing answered yet
    await asyncio.sleep(0)  # let the reader run as far as it can (not synchronisation)
    assert a2.unread() == []
    here_bp.open("apply")
    assert (await a2.recv())["type"] == "joined"
    assert (await a2.recv())["type"] == "pong"
    await remote.request({"type": "message", "roomId": "r", "content": "hello", "ref": 3})
    assert (await a2.recv())["content"] == "hello"
    assert (await a1.recv())["type"] == "joined"
    assert (await a1.recv())["content"] == "hello"


async def test_leave_and_rejoin_while_unsubscribe_is_held(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice = await peer(server, "alice")
    await alice.request({"type": "join", "roomId": "r"})
    gate = bp.hold("apply")
    alice.send({"type": "leave", "roomId": "r", "ref": 1})
    assert (await alice.recv())["type"] == "left"
    await gate.arrived()
    alice.send({"type": "join", "roomId": "r", "ref": 2})
    bp.open("apply")
    assert (await alice.recv())["type"] == "joined"
    await server.settled()
    subscribed_ok(server)


async def test_outage_then_restore_resubscribes_what_changed_meanwhile(make_server) -> None:
    bp = GatedBackplane()
    server = await make_server(backplane=bp)
    alice, bob = await peer(server, "alice"), await peer(server, "bob")
    await alice.request({"type": "join", "roomId": "old"})
    bp.drop()
    await bob.request({"type": "join", "roomId": "new"})   # wanted while down
    await alice.request({"type": "leave", "roomId": "old"})  # unwanted while down
    await server.settled()
    assert bp.subscribed == set()
    await bp.restore()
    subscribed_ok(server)


# -- back-pressure and rate limits (fault 10) ----------------------------------------

async def test_a_burst_holds_the_sender_not_the_readers(make_server) -> None:
    server = await make_server(outbox_limit=8, slow_reader_grace=5.0)
    sender, reader = await peer(server, "sender"), await peer(server, "reader")
    for p in (sender, reader):
        await p.request({"type": "join", "roomId": "r"})
    reader.transport.reading.clear()  # the reader is slow for a moment
    for i in range(40):
        sender.send({"type": "message", "roomId": "r", "content": str(i)})
    # the reader's outbox fills up: the server stops reading the sender (it holds it
    # until the outbox is down to a quarter; the writer may have taken a frame or two)
    for _ in range(50):
        await asyncio.sleep(0)  # give the server every chance to go on (it must not)
    unread = sender.transport.incoming.qsize()
    for _ in range(50):
        await asyncio.sleep(0)
    assert sender.transport.incoming.qsize() == unread > 20
    assert [f["type"] for f in sender.unread()] == ["sent"] * (40 - unread)
    reader.transport.reading.set()  # it catches up...
    got = [(await reader.recv())["content"] for _ in range(40)]
    assert got == [str(i) for i in range(40)]  # ...and nothing was lost or closed
    assert not reader.transport.closed.is_set() and not sender.transport.closed.is_set()


async def test_a_reader_that_never_drains_is_closed_after_the_grace(make_server) -> None:
    server = await make_server(outbox_limit=8, slow_reader_grace=0.2)
    sender, frozen = await peer(server, "sender"), await peer(server, "frozen")
    for p in (sender, frozen):
        await p.request({"type": "join", "roomId": "r"})
    frozen.transport.reading.clear()
    for i in range(20):
        sender.send({"type": "message", "roomId": "r", "content": str(i)})
    await asyncio.wait_for(frozen.conn.closed_future, 5)
    assert frozen.conn.close_code == CloseCode.SLOW_CONSUMER
    sender.send({"type": "ping", "ref": "fence"})
    frames = [await sender.recv() for _ in range(21)]
    assert [f["type"] for f in frames] == ["sent"] * 20 + ["pong"]


async def test_rate_limit_refuses_then_closes(make_server) -> None:
    server = await make_server(rate_limit=1.0, rate_burst=2)
    p = await peer(server, "alice")
    for i in range(2):
        assert (await p.request({"type": "ping", "ref": i}))["type"] == "pong"
    refused = await p.request({"type": "ping", "ref": 2})
    assert refused["code"] == "rate_limited" and refused["ref"] == 2
    p.send({"type": "pong"})  # heartbeat answers are never limited (and get no reply)
    for i in range(3, 5):  # more than a burst's worth refused in a row: closed
        p.send({"type": "ping", "ref": i})
    await p.finished()
    assert p.transport.close_code == CloseCode.RATE_LIMITED
    frames = p.unread()
    assert [f.get("code") for f in frames] == ["rate_limited"]


# -- the serving task reads: a close from elsewhere ends it, nothing else is swallowed ----

async def test_a_close_from_elsewhere_ends_the_serving_task_normally(make_server) -> None:
    """The read loop runs in the adapter's task (no reader task per connection). A
    close from another task cancels that read, and the adapter's handler still
    returns normally: the cancellation stops there."""
    server = await make_server()
    p = await peer(server, "alice")
    assert p.conn.reader is p.task  # reading, in the serving task itself
    p.conn.close_soon(CloseCode.POLICY_VIOLATION, "from elsewhere")
    await p.finished()
    assert p.task is not None and not p.task.cancelled() and p.task.exception() is None
    assert p.transport.close_code == CloseCode.POLICY_VIOLATION


async def test_a_close_by_the_reading_task_itself_reads_no_further(make_server) -> None:
    """A frame that closes its own connection (binary here) is the last one read:
    frames already queued behind it get no reply."""
    server = await make_server()
    p = await peer(server, "alice")
    p.send(b"\x00binary")
    p.send({"type": "ping", "ref": "after"})
    await p.finished()
    assert p.transport.close_code == CloseCode.UNSUPPORTED_DATA
    assert p.unread() == [] and not p.task.cancelled()  # type: ignore[union-attr]


async def test_cancelling_the_serving_task_still_cancels_it(make_server) -> None:
    """Someone else's cancellation (a server shutting its handlers down) is not the
    close's: it propagates, even when it arrives together with a close."""
    server = await make_server()
    lone, both = await peer(server, "lone"), await peer(server, "both")
    assert lone.task is not None and both.task is not None
    lone.task.cancel()
    both.conn.close_soon(CloseCode.GOING_AWAY, "closing")  # cancels the read ...
    both.task.cancel()  # ... and someone cancels the task as well
    for task in (lone.task, both.task):
        await asyncio.wait({task}, timeout=5)
        assert task.done()
    assert lone.task.cancelled()
    # 3.11+ counts the two cancellations and lets the second through; 3.10 cannot tell
    # them apart (no Task.uncancel) and ends normally: either way nothing is left open
    assert both.task.cancelled() or not hasattr(both.task, "uncancel")
    for p in (lone, both):
        assert p.transport.closed.is_set()
