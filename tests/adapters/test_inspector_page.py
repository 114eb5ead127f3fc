"""The inspector page (``/inspect``) in headless Chromium: members and a 4008 close,
live, on both frameworks; nothing without the API key."""

from __future__ import annotations

import secrets

import aiohttp
import pytest
from browsers import NEEDS_CHROMIUM, WAIT

from wskit.core.codes import CloseCode

pytestmark = NEEDS_CHROMIUM


@pytest.mark.timeout(120)
@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_the_page_shows_members_and_a_slow_reader_closed_with_4008(
        framework, start, clients, browser) -> None:
    key = secrets.token_urlsafe(24)
    srv = await start(framework, api_key=key, outbox_limit=50, max_message_size=1 << 20,
                      close_timeout=30, slow_reader_grace=1.0)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and not msg.location.get("url", "").endswith("/favicon.ico") else None)
    await page.goto(f"{srv.http_url}inspect#key={key}")
    await page.locator("#status", has_text="live").wait_for(timeout=WAIT)
    assert "#key" not in page.url  # the key left the address bar (and history)

    sender, stalled = [await clients(srv, user=u) for u in ("sender", "stalled")]
    for c in (sender, stalled):
        await c.join("room")
    await page.locator("#rooms tr", has_text="sender, stalled").wait_for(timeout=WAIT)
    await page.locator("#connections tr", has_text="stalled").wait_for(timeout=WAIT)

    stalled.pause_reading()
    payload = "y" * 16384
    for i in range(800):  # more than loopback socket buffers hold
        await sender.request({"type": "message", "roomId": "room", "content": f"{i}:{payload}"})
    stalled.resume_reading()
    assert await stalled.wait_closed(timeout=15) == CloseCode.SLOW_CONSUMER
    row = page.locator("#recent tr", has_text="stalled")
    await row.wait_for(timeout=WAIT)
    assert "4008" in await row.text_content()
    await page.locator("#closes tr", has_text="4008").wait_for(timeout=WAIT)
    await page.locator("#rooms tr", has_text="sender").wait_for(timeout=WAIT)
    assert await page.locator("#rooms tr", has_text="stalled").count() == 0
    assert errors == []  # the page's CSP let its own script run, and nothing failed


@pytest.mark.timeout(60)
async def test_user_names_are_shown_as_text_never_markup(start, clients, browser) -> None:
    key = secrets.token_urlsafe(24)
    srv = await start("aiohttp", api_key=key)
    evil = await clients(srv, user="x<img src=y onerror=window.pwned=1>")
    await evil.join("lobby")
    page = await browser.new_page()
    await page.goto(f"{srv.http_url}inspect#key={key}")
    await page.locator("#rooms tr", has_text="<img").wait_for(timeout=WAIT)
    assert await page.locator("#rooms img").count() == 0
    assert await page.evaluate("window.pwned") is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_without_the_key_the_page_shows_nothing_and_asks_for_it(
        framework, start, clients, browser) -> None:
    key = secrets.token_urlsafe(24)
    srv = await start(framework, api_key=key)
    alice = await clients(srv, user="alice")
    await alice.join("secret-room")
    page = await browser.new_page()
    await page.goto(f"{srv.http_url}inspect#key=wrong")
    await page.locator("#status", has_text="Authorization").wait_for(timeout=WAIT)
    assert await page.locator("#login").is_visible()
    assert "secret-room" not in await page.content()
    await page.fill("#key", key)
    await page.click("#login button")
    await page.locator("#rooms tr", has_text="secret-room").wait_for(timeout=WAIT)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_the_page_is_served_only_with_the_http_api(framework, start) -> None:
    off = await start(framework)
    on = await start(framework, api_key=secrets.token_urlsafe(24))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{off.http_url}inspect") as resp:
            assert resp.status == 404
        async with session.get(f"{on.http_url}inspect") as resp:
            assert resp.status == 200
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
