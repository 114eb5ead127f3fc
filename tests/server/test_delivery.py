"""Delivery that one client cannot break: tabs, stalled readers, killed sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wskit import ChatServer, CloseCode
from wskit.server.connection import Connection


async def test_two_tabs_sender_skipped_other_tab_served(start, clients, framework) -> None:
    srv = await start(framework)
    tab1 = await clients(srv, user="alice")
    tab2 = await clients(srv, user="alice")
    bob = await clients(srv, user="bob")
    for c in (tab1, tab2, bob):
        await c.join("lobby")
    sent = await tab1.send("lobby", "from tab 1")
    assert (await tab2.receive())["id"] == sent["id"]
    assert (await bob.receive())["id"] == sent["id"]
    await bob.direct("alice", "to both tabs")
    assert (await tab1.receive())["content"] == "to both tabs"
    assert (await tab2.receive())["content"] == "to both tabs"
    assert tab1.drain() == []  # the sending tab got its ack, not its own message

    await tab1.close()
    await bob.send("lobby", "tab 2 still here?")
    assert (await tab2.receive())["content"] == "tab 2 still here?"
    hub = srv.server.hub
    assert hub.members("lobby") == ["alice", "bob"]
    assert len(hub.user_targets("alice")) == 1

    await tab2.close()
    await bob.send("lobby", "alice gone")
    await bob.leave("lobby")
    # no trace of alice, and the empty room is gone
    assert hub.users() == ["bob"] and hub.rooms() == []


async def test_stalled_reader_holds_up_nobody_and_loses_nothing(start, clients, framework) -> None:
    # outbox large enough that the stalled client is not cut off in this test
    srv = await start(framework, outbox_limit=100_000, outbox_bytes=1 << 26,
                      max_message_size=1 << 20)
    sender = await clients(srv, user="sender")
    healthy = [await clients(srv, user=f"h{i}") for i in range(3)]
    stalled = await clients(srv, user="stalled")
    for c in (sender, *healthy, stalled):
        await c.join("room")
    stalled.pause_reading()
    payload = "x" * 4096
    count = 3000  # 12 MB per receiver: more than loopback socket buffers hold
    for i in range(count):
        await sender.request({"type": "message", "roomId": "room", "content": f"{i}:{payload}"})
    for c in healthy:
        for i in range(count):
            assert (await c.receive())["content"].startswith(f"{i}:")
    # everyone else got everything while the stalled client's frames wait server-side
    conn = next(x for x in srv.server.connections if x.user == "stalled")
    assert conn.pending > 0 and not conn.closing
    stalled.resume_reading()
    for i in range(count):
        assert (await stalled.receive(timeout=10))["content"].startswith(f"{i}:")


async def test_full_outbox_closes_only_that_client_with_4008(start, clients, framework) -> None:
    # close_timeout: the server waits this long for the stalled client to take
    # its close frame; the test resumes reading well within it
    srv = await start(framework, outbox_limit=50, max_message_size=1 << 20, close_timeout=30,
                      slow_reader_grace=1.0)
    sender = await clients(srv, user="sender")
    healthy = await clients(srv, user="healthy")
    stalled = await clients(srv, user="stalled")
    for c in (sender, healthy, stalled):
        await c.join("room")
    stalled.pause_reading()
    payload = "y" * 16384
    count = 800
    for i in range(count):
        await sender.request({"type": "message", "roomId": "room", "content": f"{i}:{payload}"})
    for i in range(count):
        assert (await healthy.receive())["content"].startswith(f"{i}:")
    assert srv.server.hub.members("room") == ["sender", "healthy"]
    stalled.resume_reading()
    assert await stalled.wait_closed(timeout=15) == CloseCode.SLOW_CONSUMER
    # its outbox was loaded and did not drain within the grace: closed for not reading
    assert "the client is not reading" in stalled.close_reason


async def test_socket_killed_mid_broadcast(start, clients, framework) -> None:
    srv = await start(framework)
    sender = await clients(srv, user="sender")
    receivers = [await clients(srv, user=f"r{i}") for i in range(5)]
    victim = receivers[2]
    for c in (sender, *receivers):
        await c.join("room")
    for i in range(200):
        if i == 50:
            await victim.kill()  # TCP reset, no closing handshake
        await sender.send("room", str(i))  # the sender never sees an error
    for c in receivers:
        if c is victim:
            continue
        assert [int((await c.receive())["content"]) for _ in range(200)] == list(range(200))
    await sender.send("room", "last")
    hub = srv.server.hub
    for c in receivers:
        if c is not victim:
            assert (await c.receive())["content"] == "last"
    assert "r2" not in hub.members("room") and "r2" not in hub.users()


class MemoryTransport:
    """An in-memory stand-in for a socket, to test the server without I/O."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[str] = []
        self.got = asyncio.Event()
        self.closed_with: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        self.got.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)
        self.incoming.put_nowait(None)

    def abort(self) -> None:
        self.incoming.put_nowait(None)


async def _wait_for(transport: MemoryTransport, n: int) -> None:
    while len(transport.sent) < n:
        transport.got.clear()
        await asyncio.wait_for(transport.got.wait(), 5)


async def test_broadcast_is_encoded_once_for_all_receivers() -> None:
    server = ChatServer(backplane="none", ping_interval=None, ping_timeout=None)
    await server.start()
    ts = [MemoryTransport() for _ in range(4)]
    tasks = [asyncio.create_task(server.serve_connection(t, server_token(server, f"u{i}")))
             for i, t in enumerate(ts)]
    for t in ts:
        t.incoming.put_nowait('{"type":"join","roomId":"r"}')
        await _wait_for(t, 2)  # welcome, joined
    ts[0].incoming.put_nowait('{"type":"message","roomId":"r","content":"once"}')
    for t in ts[1:]:
        await _wait_for(t, 3)
    frames = [t.sent[2] for t in ts[1:]]
    assert all(f is frames[0] for f in frames)  # one str object shared, not re-encoded
    await server.stop()
    await asyncio.gather(*tasks)
    restarting = (CloseCode.SERVICE_RESTART, "server restarting: reconnect to resume")
    assert all(t.closed_with == restarting for t in ts)


def server_token(server: ChatServer, user: str) -> str:
    from wskit import issue_token

    return issue_token(user, server.secret)


async def test_connection_outbox_policy_without_sockets() -> None:
    t = MemoryTransport()
    closed: list[Connection] = []
    conn = Connection(t, "u", outbox_limit=3, on_close=closed.append)
    # writer not started: nothing drains, so the 4th frame overflows
    assert [conn.deliver(str(i)) for i in range(3)] == [True] * 3
    assert conn.deliver("overflow") is False
    assert conn.closing and conn.close_code == CloseCode.SLOW_CONSUMER
    assert closed == [conn] and conn.deliver("late") is False
    await conn.wait_closed()
    assert t.closed_with is not None and t.closed_with[0] == 4008

    # the byte budget applies too: two 600-character frames do not fit in 1000
    t2, closed2 = MemoryTransport(), []
    conn2 = Connection(t2, "u", outbox_limit=100, outbox_bytes=1000, on_close=closed2.append)
    assert conn2.deliver("x" * 600) is True
    assert conn2.deliver("y" * 600) is False and conn2.close_code == CloseCode.SLOW_CONSUMER
    await conn2.wait_closed()


class WireTransport(MemoryTransport):
    """A transport that, like aiohttp's, can take ready-made frame bytes at once."""

    def __init__(self, room_for: int = 1 << 30) -> None:
        super().__init__()
        self.wire: list[bytes] = []
        self.room_for = room_for

    def try_write(self, wire: bytes) -> bool:
        if len(self.wire) >= self.room_for:
            return False
        self.wire.append(wire)
        return True


async def test_broadcast_wire_bytes_are_shared_and_order_is_kept() -> None:
    from wskit.core.protocol import text_frame

    server = ChatServer(backplane="none", ping_interval=None, ping_timeout=None)
    await server.start()
    sender, fast, tight = MemoryTransport(), WireTransport(), WireTransport(room_for=2)
    tasks = [asyncio.create_task(server.serve_connection(t, server_token(server, u)))
             for t, u in ((sender, "s"), (fast, "f"), (tight, "t"))]
    for t in (sender, fast, tight):
        t.incoming.put_nowait('{"type":"join","roomId":"r"}')
    await _wait_for(sender, 2)
    for _ in range(1000):  # let the joins land: no I/O involved, a few loop turns
        if len(fast.wire) + len(fast.sent) >= 2 and len(tight.wire) + len(tight.sent) >= 2:
            break
        await asyncio.sleep(0)
    assert len(fast.wire) + len(fast.sent) == 2
    for i in range(5):
        sender.incoming.put_nowait(f'{{"type":"message","roomId":"r","content":"{i}"}}')
    await _wait_for(sender, 7)  # five acks
    await _wait_for(tight, 5)
    # the fast receiver took shared bytes straight from each broadcast
    posts = [w for w in fast.wire if b'"message"' in w]
    assert len(posts) == 5 and posts[0] == text_frame(json_text(posts[0]).encode())
    # the tight one ran out of room after two frames: the rest queued, in order
    contents = [w for w in tight.wire if b'"message"' in w] + [
        s.encode() for s in tight.sent if '"message"' in s]
    assert [c.split(b'"content":"')[1][:1] for c in contents] == [b"0", b"1", b"2", b"3", b"4"]
    await server.stop()
    await asyncio.gather(*tasks)


def json_text(wire: bytes) -> str:
    """The payload of an unmasked text frame (RFC 6455 5.2: 7-bit or 16-bit length)."""
    assert wire[0] == 0x81 and wire[1] <= 126
    if wire[1] < 126:
        return wire[2:].decode()
    assert int.from_bytes(wire[2:4], "big") == len(wire) - 4
    return wire[4:].decode()


# -- a transport with only an async send (ASGI): sent in place, a task only if it waits --

class AsyncOnlyTransport:
    """Like Starlette's WebSocket: no try_write, a send that can be made to wait."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.open.set()
        self.fail = False
        self.cancelled = 0
        self.aborted = False
        self.closed_with: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return None

    async def send_text(self, text: str) -> None:
        if self.fail:
            raise ConnectionResetError("the peer is gone")
        try:
            await self.open.wait()  # returns at once while open, as uvicorn's writable does
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def abort(self) -> None:
        self.aborted = True


class _PlainAwaitable:
    """An awaitable that is not a coroutine (as an ASGI middleware's send may return)."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def __await__(self) -> Any:
        return (yield from self.coro.__await__())


class PlainAwaitableTransport(AsyncOnlyTransport):
    """send_text is a plain method returning an awaitable (as the FastAPI adapter's is)."""

    def send_text(self, text: str) -> Any:  # type: ignore[override]
        return _PlainAwaitable(super().send_text(text))


@pytest.fixture(params=[AsyncOnlyTransport, PlainAwaitableTransport])
def t(request: pytest.FixtureRequest) -> AsyncOnlyTransport:
    return request.param()  # type: ignore[no-any-return]


def _started(t: AsyncOnlyTransport, **kwargs: object) -> Connection:
    conn = Connection(t, "u", **kwargs)  # type: ignore[arg-type]
    conn.start()
    return conn


async def test_a_send_that_need_not_wait_runs_in_place_without_a_task(t: AsyncOnlyTransport) -> None:
    conn = _started(t)
    tasks = asyncio.all_tasks()
    assert [conn.deliver(x) for x in "abc"] == [True] * 3
    assert t.sent == ["a", "b", "c"]  # already sent: nothing was scheduled
    assert asyncio.all_tasks() == tasks and conn.frames_out == 3 and conn.pending == 0
    await conn.close()


async def test_a_send_that_waits_is_finished_by_a_writer_then_the_outbox_in_order(
        t: AsyncOnlyTransport) -> None:
    conn = _started(t)
    t.open.clear()  # the socket's buffer is full
    assert conn.deliver("a") and t.sent == []
    writer = conn._writer
    assert writer is not None  # the send that waits got a task
    assert conn.deliver("b") and conn.deliver("c") and conn.pending == 2  # behind it
    t.open.set()
    await asyncio.wait_for(writer, 2)
    assert t.sent == ["a", "b", "c"] and conn.frames_out == 3 and conn._writer is None
    assert conn.deliver("d") and t.sent[-1] == "d"  # in place again
    await conn.close()


async def test_a_waiting_send_is_cancelled_by_a_close_that_cannot_wait(t: AsyncOnlyTransport) -> None:
    conn = _started(t, close_timeout=0.05)
    t.open.clear()
    conn.deliver("never")
    await asyncio.wait_for(conn.close(CloseCode.GOING_AWAY), 2)
    # the cancellation reached the framework's send itself; no handshake behind a stuck frame
    assert t.cancelled == 1 and t.aborted and t.sent == [] and t.closed_with is None


async def test_a_send_that_fails_at_once_closes_1001(t: AsyncOnlyTransport) -> None:
    conn = _started(t)
    t.fail = True
    assert conn.deliver("x") is False
    assert conn.closing and conn.close_code == CloseCode.GOING_AWAY
    await asyncio.wait_for(conn.wait_closed(), 2)
    assert t.aborted
