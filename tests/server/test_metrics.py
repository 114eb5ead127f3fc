"""/metrics, /healthz and /readyz on both frameworks: what a scripted run did, counted."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import wskit
from wskit.adapters.api import readiness
from wskit.core.protocol import CloseCode
from wskit.server.jsonlog import JsonFormatter
from wskit.testing.memory import GatedBackplane


async def scrape(srv: wskit.RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``, parsed by prometheus-client's own parser."""
    async with aiohttp.ClientSession() as session, session.get(
            f"http://{srv.base_url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def server_conn(srv: wskit.RunningServer, user: str) -> Any:
    assert srv.server is not None
    return next(c for c in srv.server.connections if c.user == user)


async def test_metrics_count_a_scripted_run(start, clients, framework, backplane_url) -> None:
    srv = await start(framework, backplane=backplane_url, rate_limit=2, rate_burst=20)
    alice, bob, carol = [await clients(srv, user=u) for u in ("alice", "bob", "carol")]
    for c in (alice, bob, carol):
        await c.join("room")
    posts = 5
    for i in range(posts):
        await alice.send("room", f"m{i}")
    for c in (bob, carol):
        assert [(await c.expect("message"))["content"] for _ in range(posts)] == [
            f"m{i}" for i in range(posts)]
    page = await alice.request({"type": "history", "roomId": "room", "limit": 3})
    assert len(page["messages"]) == 3
    rejoin = await carol.request({"type": "join", "roomId": "room",
                                  "since": {"offset": 0, "epoch": page["epoch"]}})
    assert rejoin["recovered"] is True

    # closes: 1003 (a binary frame), 4001 (a bad token), 4029 (rate limit), 1000 (bob)
    dan = await clients(srv, user="dan")
    await dan.send_raw(b"\x00binary")
    assert await dan.wait_closed(timeout=5) == CloseCode.UNSUPPORTED_DATA
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{srv.url}?token=not-a-token") as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.UNAUTHORIZED
    abuser = await clients(srv, user="abuser")
    for _ in range(80):
        await abuser.send_raw({"type": "ping"})
    assert await abuser.wait_closed(timeout=5) == CloseCode.RATE_LIMITED
    refused = sum(1 for f in abuser.drain()
                  if f.get("type") == "error" and f.get("code") == "rate_limited")
    bob_conn = await server_conn(srv, "bob")
    await bob.close()
    await asyncio.wait_for(bob_conn.wait_closed(), 5)

    m = await scrape(srv)
    assert value(m, "wskit_posts_total") == posts
    # bob and carol each got every post; alice, the sender, got "sent" instead
    assert value(m, "wskit_deliveries_total") == 2 * posts
    assert value(m, "wskit_joins_total") == 4  # three joins and carol's rejoin
    assert value(m, "wskit_history_reads_total") == 1
    assert value(m, "wskit_recoveries_total", recovered="true") == 1
    assert value(m, "wskit_recoveries_total", recovered="false") == 0
    closes = {dict(k[1])["code"]: v for k, v in m.items() if k[0] == "wskit_closes_total"}
    assert closes == {"1000": 1, "1003": 1, "4001": 1, "4029": 1}
    assert value(m, "wskit_slow_reader_closes_total") == 0
    assert value(m, "wskit_rate_limited_frames_total") == refused + 1  # + the closing one
    assert value(m, "wskit_connections_accepted_total") == 6
    assert value(m, "wskit_connections") == 2  # alice and carol
    assert value(m, "wskit_outbox_depth_gcount") == 2
    assert value(m, "wskit_outbox_depth_bucket", le="+Inf") == 2
    assert value(m, "wskit_backplane_up") == 1
    assert value(m, "wskit_backplane_reconnects_total") == 0
    assert value(m, "wskit_draining") == 0


async def test_a_slow_reader_is_counted_as_a_4008_close(start, clients, framework) -> None:
    srv = await start(framework, outbox_limit=50, max_message_size=1 << 20, close_timeout=30,
                      slow_reader_grace=1.0)
    sender, healthy, stalled = [await clients(srv, user=u)
                                for u in ("sender", "healthy", "stalled")]
    for c in (sender, healthy, stalled):
        await c.join("room")
    stalled.pause_reading()
    payload = "y" * 16384
    count = 800  # more than loopback socket buffers hold
    for i in range(count):
        await sender.request({"type": "message", "roomId": "room", "content": f"{i}:{payload}"})
    for _ in range(count):
        await healthy.expect("message")
    stalled.resume_reading()
    assert await stalled.wait_closed(timeout=15) == CloseCode.SLOW_CONSUMER
    m = await scrape(srv)
    assert value(m, "wskit_slow_reader_closes_total") == 1
    assert value(m, "wskit_closes_total", code="4008") == 1
    assert value(m, "wskit_posts_total") == count


async def test_two_servers_in_one_process_never_mix(make_server) -> None:
    a, b = await make_server(), await make_server()
    a.stats.posts += 3
    assert a.metrics.registry is not b.metrics.registry
    text_a, text_b = a.metrics.render().decode(), b.metrics.render().decode()
    assert "wskit_posts_total 3.0" in text_a and "wskit_posts_total 0.0" in text_b
    assert a.instance_id in text_a and a.instance_id not in text_b


async def http_status(srv: wskit.RunningServer, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://{srv.base_url}{path}") as resp:
        return resp.status, await resp.json()


async def test_healthz_and_readyz(start, framework) -> None:
    bp = GatedBackplane()
    srv = await start(framework, backplane=bp)
    assert (await http_status(srv, "/healthz"))[0] == 200
    assert await http_status(srv, "/readyz") == (
        200, {"ready": True, "reason": "ready", "instance": srv.server.instance_id})
    bp.drop()  # the backplane is down: alive, but send no traffic here
    assert (await http_status(srv, "/healthz"))[0] == 200
    status, body = await http_status(srv, "/readyz")
    assert (status, body["reason"]) == (503, "backplane down")
    await bp.restore()
    assert (await http_status(srv, "/readyz"))[0] == 200


async def test_readiness_follows_the_lifecycle() -> None:
    server = wskit.ChatServer(backplane="memory://", ping_interval=None, ping_timeout=None)
    assert readiness(server).status == 503  # not started
    await server.start()
    assert readiness(server).status == 200
    stopping = asyncio.ensure_future(server.stop())
    await asyncio.sleep(0)  # one step: stop() sets draining before its first await
    assert server.draining and readiness(server).status == 503
    await stopping
    assert readiness(server).status == 503


async def test_metrics_can_be_turned_off(start, framework) -> None:
    srv = await start(framework, metrics=False)
    assert (await http_status(srv, "/metrics"))[0] == 404


def test_json_log_lines() -> None:
    record = logging.makeLogRecord({"name": "wskit.server", "levelname": "WARNING",
                                    "msg": "closing %s", "args": ("c1",), "room": "lobby"})
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "closing c1" and line["level"] == "WARNING"
    assert line["logger"] == "wskit.server" and line["room"] == "lobby"
    assert line["ts"].endswith("+00:00")


async def test_serve_logs_json_with_log_format_json() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", "--log-format", "json", "serve", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "WSKIT_SECRET"})
    try:
        # no secret: the server warns (a log line) before it prints its URL
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        record = json.loads(line)
        assert record["level"] == "WARNING" and record["message"]
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).startswith(b"ws://")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), 30)


def test_outbox_depth_buckets_are_cumulative() -> None:
    from wskit.server.metrics import _outbox_histogram

    samples = {(s.name, s.labels.get("le")): s.value
               for s in _outbox_histogram([0, 0, 1, 2, 5, 17, 1024, 2000]).samples}
    assert [samples[("wskit_outbox_depth_bucket", le)] for le in
            ("0", "1", "4", "16", "64", "256", "1024", "+Inf")] == [2, 3, 4, 5, 6, 6, 7, 8]
    assert samples[("wskit_outbox_depth_gsum", None)] == 3049
