"""The faults of the reliability battery (issue 10) that need a socket or a Redis.

The socket-free ones are in test_server_spec.py. Each test here failed before
its fix; the docstring names the fault.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from aiohttp import web
from ownredis import OwnRedis, needs_redis_server

import wskit
from wskit.backplane import RedisBackplane
from wskit.core.protocol import CloseCode
from wskit.testing.memory import Gate

pytestmark = pytest.mark.timeout(60)


# -- fault 4: a subscribe in the listener's window ------------------------------------

class HeldListener(RedisBackplane):
    """Holds the listener right after it subscribed a fresh connection."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = Gate()

    async def _resubscribe(self, pubsub: Any) -> set[str]:
        channels = await super()._resubscribe(pubsub)
        await self.gate.passage()
        return channels


async def test_subscribe_in_the_listeners_window_is_applied() -> None:
    url = f"fakeredis://window-{uuid.uuid4().hex[:8]}"
    bp = HeldListener(url)
    starting = asyncio.ensure_future(bp.start())
    await bp.gate.arrived()
    # the listener copied the wanted channels and subscribed them; Redis has not
    # confirmed yet: this subscribe finds it not live and defers to it
    await asyncio.wait_for(bp.subscribe("late"), 2)
    bp.gate.release()
    await starting  # healthy means caught up with everything wanted
    try:
        assert await bp.client.pubsub_numsub("late") == [("late", 1)]
    finally:
        await bp.stop()


# -- fault 5: a start that times out ---------------------------------------------------

@needs_redis_server
async def test_start_timeout_is_backplane_unavailable_and_leaves_nothing() -> None:
    """A Redis that answers PING but refuses SUBSCRIBE (as a proxy without pub/sub)."""
    server = OwnRedis(["--rename-command", "SUBSCRIBE", ""])
    await server.start()
    bp = RedisBackplane(server.url, confirm_timeout=0.5)
    try:
        with pytest.raises(wskit.BackplaneUnavailable, match="did not confirm SUBSCRIBE"):
            await bp.start()
        # the autouse leak check fails the test if the listener were still running
    finally:
        server.close()


# -- fault 8: the client and frames that are not objects ----------------------------------

async def test_client_survives_frames_that_are_not_objects() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for text in ("[1, 2]", '"x"', "5", "null", "not json", "[" * 50_000,
                     '{"type": "hello", "ref": [1]}'):
            await ws.send_str(text)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client = wskit.Client(f"ws://127.0.0.1:{port}/ws", welcome=False)
        await client.connect()
        assert (await client.receive())["type"] == "hello"
        assert client.bad_frames == 6
        await client.close()  # nothing resurfaces here
    finally:
        await runner.cleanup()


# -- fault 2: invalid UTF-8 floods no log --------------------------------------------------

async def test_invalid_utf8_is_1007_with_no_traceback(start, framework, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    srv = await start(framework)
    bystander = await wskit.connect(srv, user="bystander")
    try:
        for i in range(30):
            c = await wskit.connect(srv, user=f"bad{i}")
            await c.send_text_bytes(b'{"type":"ping","x":"\xff\xfe"}')
            assert await c.wait_closed() == CloseCode.INVALID_DATA
            await c.close()
        assert (await bystander.request({"type": "ping"}))["type"] == "pong"
    finally:
        await bystander.close()
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO and "UTF-8" in r.getMessage()]
    assert len(noisy) <= wskit.server.logs.client_faults.burst  # rate-limited, never one per frame


# -- fault 10: one sender's flood closes no receiver ---------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_one_senders_flood_closes_no_reader(start, framework) -> None:
    receivers, posts = 100, 3000
    srv = await start(framework)  # no backplane: the reader runs a burst without yielding
    crowd = [wskit.Client(srv, user=f"r{i}") for i in range(receivers)]
    sender = wskit.Client(srv, user="sender")
    try:
        for batch in range(0, receivers, 25):
            await asyncio.gather(*(c.connect() for c in crowd[batch:batch + 25]))
        await sender.connect()
        await asyncio.gather(*(c.join("room") for c in (*crowd, sender)))
        for i in range(posts):  # as fast as TCP takes them, no waiting for replies
            await sender.send_raw({"type": "message", "roomId": "room", "content": str(i)})

        async def take(c: wskit.Client) -> list[int]:
            return [int((await c.receive(timeout=60))["content"]) for _ in range(posts)]

        got = await asyncio.gather(*(take(c) for c in crowd))
        assert all(g == list(range(posts)) for g in got)
        assert not any(c.closed for c in (*crowd, sender))
    finally:
        await asyncio.gather(*(c.close() for c in (*crowd, sender)))
