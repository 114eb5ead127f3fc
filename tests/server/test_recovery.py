"""Recovery over real sockets: dropped connections, lost instances, a lost history.

The socket-free specification is test_history_spec.py; here real servers, real
clients (wskit.Client with reconnect=True) and a real Redis where there is one.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from typing import Any

import pytest
from conftest import REDIS_URL
from ownredis import needs_redis_server
from processes import first_line, interrupt, spawn

import wskit
from wskit import Client, ConnectionClosed, ServerError
from wskit.core.reconnect import Backoff

pytestmark = pytest.mark.timeout(60)

FAST = dict(backoff=Backoff(base=0.02, cap=0.2), timeout=10)


async def messages(client: Client, room: str, until: Any, timeout: float = 20) -> list[dict]:
    """Message frames of ``room`` until ``until(frames)`` is true."""
    got: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until(got):
        frame = await client.receive(timeout=max(0.01, deadline - loop.time()))
        if frame.get("type") == "message" and frame.get("roomId") == room:
            got.append(frame)
    return got


async def test_dropped_tcp_rejoin_elsewhere_gets_every_offset_once(start, framework,
                                                                   backplane_url) -> None:
    other = "fastapi" if framework == "aiohttp" else "aiohttp"
    a = await start(framework, backplane=backplane_url)
    b = await start(other, backplane=backplane_url)
    probe = Client([a, b], user="probe", reconnect=True, **FAST)
    poster = Client(b, user="poster")
    try:
        await probe.connect()
        await poster.connect()
        await probe.join("r")
        await poster.join("r")
        assert probe.instance == a.server.instance_id
        probe.drop()  # no close frame: the network went away
        for i in range(20):
            await poster.send("r", f"m{i}")  # while the probe is away and coming back
        await probe.wait_connected()
        for i in range(20, 40):
            await poster.send("r", f"m{i}")  # while it rejoins and after
        got = await messages(probe, "r", lambda f: len(f) >= 40 or (f and f[-1]["offset"] >= 40))
        assert [f["offset"] for f in got] == list(range(1, 41))
        assert [f["content"] for f in got] == [f"m{i}" for i in range(40)]
        assert probe.instance == b.server.instance_id and probe.reconnects == 1
        assert probe.lost == []
    finally:
        await probe.close()
        await poster.close()


async def test_more_missed_than_retained_says_not_recovered(start, framework) -> None:
    srv = await start(framework, history_size=5)
    bob, alice = await wskit.connect(srv, user="bob"), await wskit.connect(srv, user="alice")
    try:
        joined = await bob.join("r")
        await alice.join("r")
        await bob.close()
        for i in range(20):
            await alice.send("r", f"m{i}")
        async with wskit.connect(srv, user="bob") as again:
            rejoined = await again.request({"type": "join", "roomId": "r", "since": {
                "offset": joined["offset"], "epoch": joined["epoch"]}})
            assert rejoined["recovered"] is False and rejoined["offset"] == 20
            got = await messages(again, "r", lambda f: len(f) >= 5)
            assert [f["offset"] for f in got] == [16, 17, 18, 19, 20]
    finally:
        await alice.close()


@needs_redis_server
@pytest.mark.timeout(90)
async def test_redis_restart_without_persistence_is_a_new_epoch_never_a_silent_gap(
        start, own_redis) -> None:
    a = await start("aiohttp", backplane=own_redis.url)
    b = await start("fastapi", backplane=own_redis.url)
    reader = Client(a, user="reader", reconnect=True, **FAST)
    poster = Client(b, user="poster")
    try:
        await reader.connect()
        await poster.connect()
        joined = await reader.join("r")
        await poster.join("r")
        for i in range(3):
            await poster.send("r", f"before{i}")
        assert [f["offset"] for f in await messages(reader, "r", lambda f: len(f) >= 3)] == [1, 2, 3]
        own_redis.stop()
        await own_redis.start()  # empty: no persistence
        await a.server.backplane.wait_healthy(timeout=15)
        await b.server.backplane.wait_healthy(timeout=15)
        sent = await poster.send("r", "after")
        assert sent["offset"] == 1  # a new history
        reset = await reader.expect("history_reset")
        assert reset["roomId"] == "r" and reset["epoch"] != joined["epoch"]
        (after,) = await messages(reader, "r", lambda f: len(f) >= 1)
        assert after["content"] == "after" and after["epoch"] == reset["epoch"]
        assert reader.lost == ["r"]
        # and a client coming back with the old position is told, too
        async with wskit.connect(b, user="late") as late:
            rejoined = await late.request({"type": "join", "roomId": "r", "since": {
                "offset": 3, "epoch": joined["epoch"]}})
            assert rejoined["recovered"] is False and rejoined["epoch"] == reset["epoch"]
    finally:
        await reader.close()
        await poster.close()


# -- three instance processes on the real Redis; one is lost mid-chat ----------------------

@pytest.mark.skipif(not REDIS_URL, reason="set WSKIT_REDIS_URL to test on a real Redis (.ci/run does)")
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["sigkill", "drain"])
async def test_an_instance_lost_mid_chat_loses_no_message(how: str) -> None:
    assert REDIS_URL
    secret, ns = secrets.token_hex(32), f"t{uuid.uuid4().hex[:10]}"
    procs = []
    clients: list[Client] = []
    try:
        for fw in ("aiohttp", "fastapi", "aiohttp"):
            procs.append(await spawn("serve", "--framework", fw, "--port", "0", "--secret",
                                     secret, "--redis", REDIS_URL, "--namespace", ns))
        urls = [await first_line(p) for p in procs]
        clients.extend(Client(urls[i % 3:] + urls[:i % 3], user=f"u{i}", secret=secret,
                              reconnect=True, **FAST) for i in range(30))
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(*(c.join(f"r{i % 5}") for i, c in enumerate(clients)))
        acked = 0
        halfway = asyncio.Event()

        async def chatter(i: int, c: Client) -> None:
            nonlocal acked
            for k in range(10):
                while True:
                    try:
                        await c.send(f"r{i % 5}", f"u{i}:{k}")
                        break
                    except (ConnectionClosed, ServerError, asyncio.TimeoutError):
                        await c.wait_connected(timeout=30)  # then post again
                acked += 1
                if acked >= 100:
                    halfway.set()

        async def lose_an_instance() -> None:
            await halfway.wait()
            if how == "sigkill":
                procs[0].kill()
            else:
                procs[0].send_signal(signal.SIGTERM)  # graceful drain: 1012 to everyone
            await procs[0].wait()

        await asyncio.gather(lose_an_instance(), *(chatter(i, c) for i, c in enumerate(clients)))
        assert all(c.reconnects == (1 if i % 3 == 0 else 0) for i, c in enumerate(clients))

        # the truth: each room's history, read through a surviving instance
        async with wskit.connect(urls[1], user="auditor", secret=secret) as auditor:
            history = {}
            for r in range(5):
                await auditor.join(f"r{r}")
                page = await auditor.request({"type": "history", "roomId": f"r{r}"})
                history[f"r{r}"] = [(m["offset"], m["content"]) for m in page["messages"]]
        for room, entries in history.items():
            assert [o for o, _ in entries] == list(range(1, len(entries) + 1)), room
            assert len(entries) >= 60  # 6 clients x 10 posts (a retried post may count twice)

        for i, c in enumerate(clients):
            room, entries = f"r{i % 5}", history[f"r{i % 5}"]
            mine = {o for o, text in entries if text.startswith(f"u{i}:")}
            others = [o for o, _ in entries if o not in mine]
            got = await messages(c, room, lambda f: {x["offset"] for x in f} >= set(others),
                                 timeout=30)
            offsets = [f["offset"] for f in got]
            assert offsets == sorted(set(offsets)), (i, offsets)  # in order, exactly once
            assert set(offsets) | mine == {o for o, _ in entries}, i  # no gap
            assert c.lost == []
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        for proc in procs:
            if proc.returncode is None:
                await interrupt(proc)


async def test_each_reconnect_asks_the_token_callable(start, framework) -> None:
    srv = await start(framework)
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(srv.token("carol", ttl=60))
        return issued[-1]

    carol = Client(srv, token=fresh_token, reconnect=True, **FAST)
    try:
        await carol.connect()
        await carol.join("r")
        carol.drop()
        await carol.expect("reconnected")
        assert len(issued) == 2 and carol.user == "carol"
        assert (await carol.expect("rejoined"))["recovered"] is True
    finally:
        await carol.close()


async def test_no_reconnect_after_4001_without_a_new_token(start, framework) -> None:
    srv = await start(framework)
    dave = Client(srv, token=srv.token("dave", ttl=60), reconnect=True, **FAST)
    try:
        await dave.connect()
        # the server now refuses that token (its secret changed: a key rotation)
        srv.server.secret = "another-secret-0123456789abcdef0123456789"
        dave.drop()
        assert await dave.wait_closed(timeout=10) == 4001
        assert dave.reconnects == 0
    finally:
        await dave.close()


async def test_no_reconnect_after_the_application_closes(start, framework) -> None:
    srv = await start(framework)
    erin = Client(srv, user="erin", reconnect=True, **FAST)
    await erin.connect()
    await erin.close()
    assert erin.closed and erin.reconnects == 0
    assert len(srv.server.hub) == 0 or all(c.closing for c in srv.server.connections)
