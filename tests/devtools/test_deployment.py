"""Behind a proxy: the documented nginx config with TLS in front of two instances,
and the idle timeouts a proxy or load balancer imposes."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from pathlib import Path

import aiohttp
import pytest

from wskit.devtools.deploy import IdleRelay, LocalNginx, find_nginx, nginx_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
needs_nginx = pytest.mark.skipif(find_nginx() is None,
                                 reason="nginx is not installed (apt-get install nginx-light)")


def test_the_docs_show_the_config_the_tests_run() -> None:
    """docs/deployment.md's config block is nginx_config() with the example values."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block, "docs/deployment.md has no ```nginx block"
    assert block.group(1) == nginx_config(
        8443, ["10.0.0.11:8000", "10.0.0.12:8000"], "/etc/ssl/chat.example.com.pem",
        "/etc/ssl/chat.example.com.key", "/var/lib/wskit-nginx")


def _trusting(nginx: LocalNginx) -> ssl.SSLContext:
    context = ssl.create_default_context()
    assert nginx.ca is not None
    nginx.ca.configure_trust(context)
    return context


@needs_nginx
@pytest.mark.timeout(60)
async def test_a_client_chats_through_nginx_with_tls(start, clients) -> None:
    origin = "https://chat.example.com"  # the public origin the browser sends, unchanged
    backplane = f"fakeredis://deploy-{uuid.uuid4().hex[:8]}"
    a = await start("aiohttp", backplane=backplane, origins=(origin,))
    b = await start("fastapi", backplane=backplane, origins=(origin,))
    nginx = LocalNginx([a.base_url, b.base_url])
    await asyncio.to_thread(nginx.start)
    try:
        context = _trusting(nginx)
        url = f"{nginx.url}/ws"
        alice = await clients(url, user="alice", ssl=context, headers={"Origin": origin})
        bob = await clients(url, user="bob", ssl=context, headers={"Origin": origin})
        # round robin, no stickiness: one lands on each instance, the backplane joins them
        assert {alice.welcome["instance"], bob.welcome["instance"]} == {
            a.server.instance_id, b.server.instance_id}
        await alice.join("lobby")
        await bob.join("lobby")
        await alice.send("lobby", "through nginx, over TLS")
        assert (await bob.receive())["content"] == "through nginx, over TLS"
        await bob.send("lobby", "and back")
        assert (await alice.receive())["content"] == "and back"

        # the Origin check works behind the proxy: a foreign page is refused
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await clients(url, user="mallory", ssl=context,
                          headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        # plain ws:// to the TLS port is not a WebSocket
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await clients(url.replace("wss://", "ws://"), user="carol")

        await alice.close()
        await bob.close()
        log = await asyncio.to_thread(nginx.access_log)
        assert log.count("GET /ws") >= 3, log
        assert "token=" not in log, "the token must not reach the access log"
    finally:
        await asyncio.to_thread(nginx.stop)


@needs_nginx
@pytest.mark.timeout(60)
async def test_proxy_read_timeout_closes_a_silent_connection_not_a_pinged_one(start,
                                                                            clients) -> None:
    quiet = await start("aiohttp", ping_interval=None, ping_timeout=None)
    pinged = await start("aiohttp", ping_interval=0.3, ping_timeout=1.0)
    proxies = [LocalNginx([s.base_url], read_timeout=1) for s in (quiet, pinged)]
    for proxy in proxies:
        await asyncio.to_thread(proxy.start)
    try:
        silent, alive = [await clients(f"{p.url}/ws", user=u, ssl=_trusting(p))
                         for p, u in zip(proxies, ("silent", "alive"))]
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = await silent.wait_closed(timeout=10)
        # cut by nginx without a WebSocket close frame: aiohttp reports the end of the
        # TLS stream as 1006, or on Python 3.10 (whose TLS layer sees nginx's
        # close_notify) as 1000; after the 1 s timeout, not before
        assert code in (1000, 1006) and 0.5 < loop.time() - started < 5
        await alive.wait_pings(alive.pings + 8, timeout=10)  # 2.4 s: beyond the 1 s timeout
        assert not alive.closed
        await alive.join("lobby")  # still a working connection
    finally:
        for proxy in proxies:
            await asyncio.to_thread(proxy.stop)


@pytest.mark.timeout(30)
async def test_an_idle_timeout_relay_cuts_only_the_quiet(start, clients) -> None:
    quiet = await start("aiohttp", ping_interval=None, ping_timeout=None)
    pinged = await start("fastapi", ping_interval=0.2, ping_timeout=1.0)
    relays = [await IdleRelay(("127.0.0.1", s.port), idle_timeout=0.8).start()
              for s in (quiet, pinged)]
    try:
        silent = await clients(f"ws://{relays[0].address}/ws", user="silent")
        alive = await clients(f"ws://{relays[1].address}/ws", user="alive")
        assert await silent.wait_closed(timeout=5) == 1006
        assert relays[0].closed_idle == 1
        await alive.wait_pings(alive.pings + 8, timeout=10)
        assert not alive.closed and relays[1].closed_idle == 0
    finally:
        for relay in relays:
            await relay.stop()
