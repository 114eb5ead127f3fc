"""Safe defaults on both frameworks: who may open a socket, which names are served,
what the page allows, how long a handshake may take, and what the logs keep."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys

import aiohttp
import pytest

import wskit
from wskit.core.protocol import CloseCode
from wskit.exceptions import AuthError, ConfigError, ConnectionClosed
from wskit.security import identity
from wskit.security.origins import host_allowed, origin_allowed
from wskit.security.redact import redact

# -- identifiers -------------------------------------------------------------------


@pytest.mark.parametrize("sub, words", [
    ("x" * 129, "longer than 128"),
    ("alice\nbob", "U+000A"),
    ("alice\x00", "U+0000"),
    ("\u202eecila", "U+202E"),  # RIGHT-TO-LEFT OVERRIDE: displays as "alice"
    # letters and marks that render as nothing (Default_Ignorable_Code_Point): "alice"
    ("alice\u034f", "U+034F"), ("alice\ufe0f", "U+FE0F"), ("alice\u1160", "U+1160"),
    ("alice\u2800", "U+2800"),
    ("ali\u200bce", "U+200B"),  # ZERO WIDTH SPACE: an invisible twin
    ("\uff41\uff4c\uff49\uff43\uff45", "NFKC"),  # fullwidth ａｌｉｃｅ
    (" alice", "white space"),
    ("", "empty"),
])
def test_a_sub_that_could_pass_for_someone_else_is_refused(sub: str, words: str) -> None:
    with pytest.raises(AuthError, match=re.escape(words)):
        identity.check_user_id(sub)


@pytest.mark.parametrize("sub", ["alice", "x" * 128, "山田太郎", "Ωmega", "a.b@example.com",
                                 "d1b0c3e4-7a2f-4c8e-9b1a-5f6e7d8c9b0a"])
def test_ordinary_ids_pass(sub: str) -> None:
    assert identity.check_user_id(sub) == sub


async def test_a_bad_sub_closes_4001_with_the_reason(start, framework) -> None:
    srv = await start(framework)
    client = wskit.Client(srv.url, token=srv.token("\u202eecila"))
    with pytest.raises(ConnectionClosed) as info:
        await client.connect()
    await client.close()
    assert info.value.code == CloseCode.UNAUTHORIZED == 4001
    assert "U+202E" in info.value.reason


async def test_the_dev_token_route_folds_and_refuses(start, framework) -> None:
    srv = await start(framework, dev_tokens=True)
    base = f"http://127.0.0.1:{srv.port}/token"
    async with aiohttp.ClientSession() as http:
        async with http.get(base, params={"user": "\uff41\uff4c\uff49\uff43\uff45"}) as r:
            body = await r.json()
            assert r.status == 200 and body["user"] == "alice"
            assert wskit.verify_token(body["token"]) == "alice"
        for bad in ("ali\u202ece", "x" * 129, "a\nb"):
            async with http.get(base, params={"user": bad}) as r:
                assert r.status == 400, bad


# -- the development secret, and secrets ------------------------------------------


async def test_serve_refuses_the_dev_secret_off_loopback(monkeypatch) -> None:
    monkeypatch.delenv("WSKIT_SECRET")
    monkeypatch.setattr(wskit.security.tokens, "_warned", False)  # it warns once per process
    with pytest.warns(wskit.security.tokens.DevSecretWarning):
        with pytest.raises(ConfigError, match="--secret.*WSKIT_SECRET"):
            await wskit.serve("aiohttp", host="0.0.0.0", backplane="none", name="exposed")
    assert "exposed" not in wskit.running()


async def test_the_cli_exits_non_zero_on_0000_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "WSKIT_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", "serve", "--host", "0.0.0.0", "--port", "0",
        "--redis", "none", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"ws://" not in out  # it never listened
    assert b"development secret" in err and b"--secret" in err and b"WSKIT_SECRET" in err


@pytest.mark.parametrize("secret", ["", "short"])
async def test_the_cli_refuses_empty_and_short_secrets(secret: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", "serve", "--port", "0", "--redis", "none",
        "--secret", secret, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"ws://" not in out
    assert (b"empty" if not secret else b"at least 32") in err


# -- Origin ----------------------------------------------------------------------


def test_origin_rules() -> None:
    host = "chat.example.com"
    assert origin_allowed(None, host, None)  # not a browser
    assert origin_allowed("https://chat.example.com", host, None)
    assert origin_allowed("https://Chat.Example.com:443", host, None)
    assert not origin_allowed("https://evil.example", host, None)
    assert not origin_allowed("https://chat.example.com.evil.example", host, None)
    assert not origin_allowed("null", host, None)
    assert not origin_allowed("http://chat.example.com:8080", host, None)
    assert not origin_allowed("https://chat.example.com", None, None)
    assert origin_allowed("https://app.example", host, ["https://app.example"])
    assert not origin_allowed("https://chat.example.com", host, ["https://app.example"])
    assert origin_allowed("https://anything.example", host, ["*"])


async def test_a_foreign_origin_gets_403_by_default(start, clients, framework) -> None:
    srv = await start(framework)  # no origins given
    evil = wskit.Client(srv, user="victim", headers={"Origin": "https://evil.example"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await evil.connect()
    await evil.close()
    assert info.value.status == 403
    assert len(srv.server.hub) == 0
    own = await clients(srv, user="victim", headers={"Origin": f"http://127.0.0.1:{srv.port}"})
    assert own.welcome["userId"] == "victim"  # the server's own page
    script = await clients(srv, user="script")  # no Origin: not a browser
    assert script.welcome["userId"] == "script"


async def test_a_rebound_page_cannot_open_a_socket(start, clients, framework) -> None:
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 is same-origin with itself
    (Origin and Host both name it), so the Host check is what refuses its socket."""
    srv = await start(framework, allowed_hosts=("chat.example.com",))
    for name in ("evil.example", "chat.example.com"):
        headers = {"Host": f"{name}:{srv.port}", "Origin": f"http://{name}:{srv.port}"}
        client = wskit.Client(srv, user="victim", headers=headers)
        if name == "evil.example":
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.connect()
            await client.close()
            assert info.value.status == 403
        else:  # a name the server was told it serves under (behind a proxy)
            opened = await clients(srv, user="victim", headers=headers)
            assert opened.welcome["userId"] == "victim"
    assert [c.user for c in srv.server.connections] == ["victim"]


# -- Host (DNS rebinding) and the page's headers -------------------------------------


def test_host_rules() -> None:
    assert host_allowed("127.0.0.1:8765") and host_allowed("[::1]:8765")
    assert host_allowed("localhost:8765") and host_allowed("10.0.0.5")
    assert not host_allowed("evil.example:8765")
    assert host_allowed("chat.example.com", {"chat.example.com"})
    assert not host_allowed("chat.example.com.evil.example", {"chat.example.com"})


async def test_healthz_and_token_answer_only_allowed_hosts(start, framework) -> None:
    srv = await start(framework, dev_tokens=True, allowed_hosts=("chat.example.com",))
    base = f"http://127.0.0.1:{srv.port}"
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/token?user=alice"):
            for host, status in (("evil.example", 400), (f"evil.example:{srv.port}", 400),
                                 (f"127.0.0.1:{srv.port}", 200), ("localhost", 200),
                                 ("chat.example.com", 200)):
                async with http.get(base + path, headers={"Host": host}) as r:
                    assert r.status == status, (path, host)
                    if status == 400:
                        assert "token" not in await r.json()


async def test_the_page_sends_csp_and_nosniff(start, framework) -> None:
    srv = await start(framework)
    async with aiohttp.ClientSession() as http, http.get(srv.http_url) as r:
        assert r.status == 200
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'sha256-" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"


# -- the handshake timeout ---------------------------------------------------------


async def _closed_after(port: int, data: bytes, limit: float) -> float:
    """Send ``data`` and wait (at most ``limit`` s) for the server to close; the time."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = loop.time()
    try:
        writer.write(data)
        await writer.drain()
        while await asyncio.wait_for(reader.read(4096), limit):
            pass  # an answer: read until the close
        return loop.time() - began
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass  # aborted by the server: expected


async def test_half_a_request_is_dropped_after_the_handshake_timeout(start, framework) -> None:
    srv = await start(framework, handshake_timeout=1.0)
    half = b"GET /ws?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    silent = b""
    for data in (half, silent):
        took = await _closed_after(srv.port, data, limit=8.0)
        assert 0.9 <= took < 5.0, took


async def test_a_connection_outlives_the_handshake_timeout(start, framework) -> None:
    """The deadline is for the request head only: an open WebSocket is not touched."""
    srv = await start(framework, handshake_timeout=0.5, ping_interval=0.4, ping_timeout=2.0)
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"{srv.url}?token={srv.token('alice')}") as ws:
        pings = 0
        while pings < 3:  # three app-level pings: > 1 s, twice the deadline
            frame = json.loads(await ws.receive_str(timeout=5))
            if frame["type"] == "ping":
                pings += 1
                await ws.send_str('{"type": "pong"}')
        await ws.send_str('{"type": "join", "roomId": "lobby"}')
        while (frame := json.loads(await ws.receive_str(timeout=5)))["type"] != "joined":
            pass
        assert not ws.closed


# -- tokens out of the frameworks' logs ------------------------------------------------


def test_redact() -> None:
    assert redact('"WebSocket /ws?token=eyJ.a.b" [accepted]') == \
        '"WebSocket /ws?token=[redacted]" [accepted]'
    assert redact("GET /ws?room=a&token=eyJ.a.b&x=1 HTTP/1.1") == \
        "GET /ws?room=a&token=[redacted]&x=1 HTTP/1.1"
    assert redact("/ws?token%3DeyJ.a.b") == "/ws?token%3D[redacted]"
    # the frameworks decode a query's names: these are a token to them, or logged as one
    assert redact("GET /ws?TOKEN=eyJ.a.b HTTP/1.1") == "GET /ws?TOKEN=[redacted] HTTP/1.1"
    assert redact("GET /ws?%74oken=eyJ.a.b&x=1") == "GET /ws?%74oken=[redacted]&x=1"
    assert redact("GET /ws?to%6Ben%3DeyJ.a.b") == "GET /ws?to%6Ben%3D[redacted]"
    assert redact("100% of the tokens, none=here") == "100% of the tokens, none=here"


async def test_no_token_in_framework_logs(framework, caplog) -> None:
    """create_app() under the frameworks' own servers, access logs on."""
    from wskit.runner.serve import bind_socket

    server = wskit.ChatServer(backplane="none", ping_interval=None, ping_timeout=None)
    token = wskit.issue_token("alice", server.secret)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    if framework == "aiohttp":
        from aiohttp import web

        from wskit.adapters.aiohttp import create_app

        runner = web.AppRunner(create_app(server))  # aiohttp.access on, its default format
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        stop = runner.cleanup
    else:
        import uvicorn

        from wskit.adapters.fastapi import create_app as create_asgi

        config = uvicorn.Config(create_asgi(server), log_config=None, log_level="debug",
                                access_log=True, lifespan="on", ws="websockets-sansio")
        userver = uvicorn.Server(config)
        task = asyncio.ensure_future(userver.serve(sockets=[sock]))

        async def started() -> None:  # uvicorn.Server has a flag, not an event
            while not userver.started and not task.done():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(started(), 10)
        assert userver.started

        async def stop() -> None:
            userver.should_exit = True
            await task
    try:
        async with wskit.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as alice:
            await alice.join("lobby")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz?token={token}") as r:
                assert r.status == 200
    finally:
        await stop()
        sock.close()
    by_logger: dict[str, str] = {}
    for record in caplog.records:
        by_logger[record.name] = by_logger.get(record.name, "") + record.getMessage() + "\n"
    # the lines that carried the token were logged (the test can fail), redacted
    expected = (("aiohttp.access",) if framework == "aiohttp"
                else ("uvicorn.access", "uvicorn.error"))
    for name in expected:
        assert "token=[redacted]" in by_logger.get(name, ""), (name, by_logger)
    text = "\n".join(by_logger.values()) + caplog.text
    assert token not in text and token.split(".")[2] not in text
