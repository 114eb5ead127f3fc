"""wskit.Client over real sockets: its lesson hooks and its bookkeeping.

The recovery rules themselves are specified without sockets in
tests/core/test_tracker.py; tests/server/test_recovery.py runs them end to end.
"""

from __future__ import annotations

import pytest
from polling import until

import wskit
from wskit import (
    Client,
    ClientStateError,
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from wskit.core.reconnect import Backoff

pytestmark = pytest.mark.timeout(60)


async def test_drop_closes_without_a_close_frame_and_the_server_notices(start, framework,
                                                                        clients) -> None:
    srv = await start(framework)
    victim = await clients(srv, user="victim")
    await victim.join("r")
    victim.drop()
    # no close frame either way: 1006, which a client reports and never receives
    assert await victim.wait_closed() == CloseCode.ABNORMAL_CLOSURE
    await until(lambda: "victim" not in srv.server.hub.users())
    with pytest.raises(ConnectionClosedError) as info:
        await victim.receive(timeout=5)
    assert info.value.code == CloseCode.ABNORMAL_CLOSURE


async def test_drop_with_reconnect_comes_back_and_rejoins(start, framework, clients) -> None:
    srv = await start(framework)
    back = await clients(srv, user="back", reconnect=True, backoff=Backoff(0.02, 0.2))
    await back.join("r")
    back.drop()
    assert (await back.expect("reconnected"))["attempts"] >= 1
    assert (await back.expect("rejoined"))["roomId"] == "r"
    assert back.reconnects == 1 and list(back.rooms) == ["r"]


async def test_kill_is_for_good_even_with_reconnect(start, framework, clients) -> None:
    srv = await start(framework)
    doomed = await clients(srv, user="doomed", reconnect=True, backoff=Backoff(0.02, 0.2))
    await doomed.kill()
    assert doomed.closed and doomed.reconnects == 0
    await until(lambda: "doomed" not in srv.server.hub.users())


async def test_a_paused_reader_gets_everything_once_resumed_in_order(start, framework,
                                                                     clients) -> None:
    srv = await start(framework)
    slow, talker = await clients(srv, user="slow"), await clients(srv, user="talker")
    await slow.join("r")
    await talker.join("r")
    slow.pause_reading()
    for i in range(20):
        await talker.send("r", f"m{i}")
    # nothing read while paused, but the one read already under way
    early = slow.drain()
    assert len(early) <= 1
    slow.resume_reading()
    got = early + [await slow.expect("message") for _ in range(20 - len(early))]
    assert [f["content"] for f in got] == [f"m{i}" for i in range(20)]
    assert [f["offset"] for f in got] == list(range(1, 21))
    assert slow.rooms["r"]["offset"] == 20


async def test_invalid_utf8_in_a_text_frame_is_closed_with_1007(start, framework,
                                                                clients) -> None:
    srv = await start(framework)
    bad = await clients(srv, user="bad")
    await bad.send_text_bytes(b'{"type":"ping","ref":"\xff"}')
    assert await bad.wait_closed() == wskit.CloseCode.INVALID_DATA


async def test_leaving_a_room_stops_its_tracking(start, clients) -> None:
    srv = await start("aiohttp")
    alice = await clients(srv, user="alice")
    joined = await alice.join("r")
    assert alice.rooms == {"r": {"offset": joined["offset"], "epoch": joined["epoch"]}}
    await alice.leave("r")
    assert alice.rooms == {} and alice.lost == []


def test_the_sync_facade_speaks_the_same_protocol() -> None:
    with wskit.serve_in_thread("aiohttp", backplane="none", name="sync-client") as srv:
        with wskit.SyncClient(srv, user="a") as a, wskit.SyncClient(srv, user="b") as b:
            a.join("r")
            b.join("r")
            assert a.send("r", "hi")["type"] == "sent"
            frame = b.receive(timeout=5)
            assert (frame["type"], frame["content"], frame["offset"]) == ("message", "hi", 1)
            assert a.welcome["userId"] == "a" and b.lost == [] and b.reconnects == 0


def test_the_client_package_keeps_its_public_names() -> None:
    from wskit.client import Client as C
    from wskit.client import SyncClient, connect

    assert C is Client is wskit.Client and SyncClient is wskit.SyncClient
    assert connect is wskit.connect


async def test_a_goodbye_is_closed_ok_and_a_drain_is_closed_error(start, framework,
                                                                  clients) -> None:
    srv = await start(framework)
    leaving = await clients(srv, user="leaving")
    await leaving.close()
    with pytest.raises(ConnectionClosedOK) as ok:
        await leaving.receive(timeout=5)
    assert ok.value.code == CloseCode.NORMAL and isinstance(ok.value, ConnectionClosed)
    drained = await clients(srv, user="drained")
    await srv.stop()
    with pytest.raises(ConnectionClosedError) as err:
        await drained.receive(timeout=5)
    assert err.value.code == CloseCode.SERVICE_RESTART


def test_closed_ok_or_error_follows_python_websockets() -> None:
    for code in (1000, 1001, 1005, 0):  # 0: aiohttp's code for a close frame without one
        assert type(ConnectionClosed.of(code)) is ConnectionClosedOK
    for code in (None, 1006, 1011, 1012, 1013, 4001, 4008):
        assert type(ConnectionClosed.of(code, "why")) is ConnectionClosedError
    assert issubclass(ConnectionClosedError, ConnectionError)  # as before the split


async def test_requests_before_connect_are_a_state_error() -> None:
    client = Client("ws://127.0.0.1:9/ws", user="early")
    with pytest.raises(ClientStateError, match="not connected"):
        await client.join("r")
    assert isinstance(ClientStateError("x"), RuntimeError)  # what it raised before
    await client.close()


async def test_a_server_without_welcome_is_a_state_error_unless_told() -> None:
    from aiohttp import web

    async def other(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type": "hello"}')  # not wskit: no welcome frame
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", other)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(ClientStateError, match="expected a welcome frame"):
            await Client(f"ws://127.0.0.1:{port}/ws").connect()
        async with wskit.connect(f"ws://127.0.0.1:{port}/ws", welcome=False) as plain:
            assert await plain.receive() == {"type": "hello"}
    finally:
        await runner.cleanup()


def test_drop_works_on_uvloop_too() -> None:
    """uvloop's socket wrapper refuses shutdown(); drop goes through a duplicate fd."""
    pytest.importorskip("uvloop")

    async def main() -> tuple[int | None, str]:
        srv = await wskit.serve("aiohttp", backplane="none", port=0, name="uvloop-drop")
        try:
            async with wskit.connect(srv, user="u", reconnect=True,
                                     backoff=Backoff(0.02, 0.2)) as client:
                await client.join("r")
                client.drop()
                back = await client.expect("reconnected", timeout=10)
                return client.reconnects, back["type"]
        finally:
            await srv.stop()

    assert wskit.run(main(), loop="uvloop") == (1, "reconnected")
