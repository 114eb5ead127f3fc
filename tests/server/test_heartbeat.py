"""Heartbeats: dead peers found within interval + timeout, live ones never dropped."""

from __future__ import annotations

import asyncio
import logging

import pytest

import wskit
from wskit import CloseCode, ServerError

INTERVAL, TIMEOUT = 0.3, 0.3
SLACK = 0.5  # scheduling on a shared 2-core machine; the bound itself is interval + timeout


async def test_zombie_closed_within_bound_and_leaves_no_trace(start, clients, framework,
                                                              caplog) -> None:
    srv = await start(framework, ping_interval=INTERVAL, ping_timeout=TIMEOUT)
    alive = await clients(srv, user="alive")
    zombie = await clients(srv, user="zombie")
    await alive.join("r")
    await zombie.join("r")
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.DEBUG, logger="wskit")
    zombie_conn = next(c for c in srv.server.connections if c.user == "zombie")
    zombie.answer_pings = False  # TCP stays open; it just never answers
    silent_at = loop.time()
    code = await zombie.wait_closed(timeout=INTERVAL + TIMEOUT + 5)
    took = loop.time() - silent_at
    assert code == CloseCode.HEARTBEAT_TIMEOUT == 4002
    assert TIMEOUT <= took <= INTERVAL + TIMEOUT + SLACK, took
    assert srv.server.hub.members("r") == ["alive"] and "zombie" not in srv.server.hub.users()
    # closed once, with one log line, no storm
    lines = [r for r in caplog.records if "zombie" in r.getMessage()]
    assert len(lines) == 1 and "no pong" in lines[0].getMessage()
    # the zombie's timers went with it; only alive's heartbeat is left
    assert zombie_conn.heartbeat is not None and not zombie_conn.heartbeat.active
    open_conns = [c for c in srv.server.connections if not c.closing]
    assert [c.user for c in open_conns] == ["alive"]
    assert all(c.heartbeat is not None and c.heartbeat.active for c in open_conns)
    await alive.send("r", "still fine")


async def test_client_that_stopped_reading_is_closed_too(start, clients, framework) -> None:
    srv = await start(framework, ping_interval=INTERVAL, ping_timeout=TIMEOUT, close_timeout=0.5)
    frozen = await clients(srv, user="frozen")
    await frozen.join("r")
    frozen.pause_reading()
    conn = next(c for c in srv.server.connections if c.user == "frozen")
    await asyncio.wait_for(conn.closed_future, INTERVAL + TIMEOUT + 5)
    assert conn.close_code == CloseCode.HEARTBEAT_TIMEOUT
    assert srv.server.hub.rooms() == []


async def test_zombie_vanishes_from_other_instances_view(start, clients, backplane_url) -> None:
    a = await start("aiohttp", backplane=backplane_url, ping_interval=INTERVAL,
                    ping_timeout=TIMEOUT)
    b = await start("fastapi", backplane=backplane_url)
    zombie = await clients(a, user="zombie", answer_pings=False)
    alice = await clients(b, user="alice")
    await zombie.join("r")
    await alice.join("r")
    await alice.direct("zombie", "are you there?")  # reachable across instances now
    assert await zombie.wait_closed(timeout=INTERVAL + TIMEOUT + 5) == 4002
    ns = a.server.settings.namespace
    # the server closed it, so its bookkeeping began before the client saw 4002
    await asyncio.wait_for(a.server.settled(), 5)
    assert not {f"{ns}:room:r", f"{ns}:user:zombie"} & a.server.backplane.channels
    with pytest.raises(ServerError, match="user_offline"):
        await alice.direct("zombie", "hello?")


async def test_idle_but_live_client_is_never_closed(start, clients, framework) -> None:
    srv = await start(framework, ping_interval=0.05, ping_timeout=0.1)
    idle = await clients(srv, user="idle")
    await idle.join("r")
    await idle.wait_pings(40, timeout=20)  # 40 intervals, every one answered
    assert not idle.closed and srv.server.hub.members("r") == ["idle"]
    hb = srv.server.connections[0].heartbeat
    assert hb is not None
    assert hb.last_rtt is not None and hb.last_rtt < 0.1


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_200_idle_clients_no_spurious_close(start, framework) -> None:
    srv = await start(framework, ping_interval=0.25, ping_timeout=1.0)
    crowd = [wskit.Client(srv, user=f"u{i}") for i in range(200)]
    try:
        for batch in range(0, 200, 50):
            await asyncio.gather(*(c.connect() for c in crowd[batch:batch + 50]))
        await asyncio.gather(*(c.join(f"room{i % 10}") for i, c in enumerate(crowd)))
        await asyncio.gather(*(c.wait_pings(8, timeout=30) for c in crowd))
        assert not any(c.closed for c in crowd)
        assert len(srv.server.hub) == 200
    finally:
        await asyncio.gather(*(c.close() for c in crowd))


async def test_heartbeat_off_switch(start, clients, framework) -> None:
    srv = await start(framework, ping_interval=None, ping_timeout=None)
    c = await clients(srv, user="u")
    assert c.welcome["heartbeat"] is None
    assert [conn.heartbeat for conn in srv.server.connections] == [None]


@pytest.mark.parametrize("kwargs", [dict(ping_interval=1.0, ping_timeout=None),
                                    dict(ping_interval=0, ping_timeout=1.0)])
def test_heartbeat_settings_are_validated(kwargs) -> None:
    with pytest.raises(wskit.ConfigError):
        wskit.Settings(**kwargs)


async def test_protocol_level_ping_closes_a_peer_that_never_pongs(start, clients, framework) -> None:
    # Protocol pings (RFC 6455 ping frames) are answered by the WebSocket library,
    # not by application code: a client with autoping off stands in for a dead peer.
    srv = await start(framework, ping_interval=None, ping_timeout=None,
                      protocol_ping_interval=0.2, protocol_ping_timeout=0.2)
    healthy = await clients(srv, user="healthy")
    mute = await clients(srv, user="mute", protocol_pongs=False)
    mute_conn = next(c for c in srv.server.connections if c.user == "mute")
    await mute.wait_closed(timeout=10)
    assert mute.close_code != CloseCode.NORMAL
    # the client may see its TCP connection dropped before the server's reader
    # sees the disconnect (uvicorn closes the transport, then tells the app): wait
    # for the server's side rather than asserting in between (failed on 3.12+)
    await asyncio.wait_for(asyncio.shield(mute_conn.closed_future), 5)
    assert srv.server.hub.users() == ["healthy"]
    assert not healthy.closed
