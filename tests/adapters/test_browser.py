"""A real browser (Debian's headless Chromium, driven by Playwright) on the chat page."""

from __future__ import annotations

import uuid

import pytest
from browsers import NEEDS_CHROMIUM, WAIT

import wskit

pytestmark = NEEDS_CHROMIUM


async def _open(browser, server: wskit.RunningServer, user: str):
    page = await browser.new_page()
    await page.goto(f"{server.http_url}?user={user}&room=lobby")
    await page.wait_for_selector("#status.connected", timeout=WAIT)
    await page.wait_for_selector('#rooms li[data-room="lobby"]', timeout=WAIT)
    return page


async def _say(page, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")


async def _sees(page, text: str) -> None:
    await page.locator("#log li", has_text=text).first.wait_for(timeout=WAIT)


@pytest.mark.timeout(120)
async def test_two_users_chat_across_instances_and_survive_a_restart(start, browser) -> None:
    url = f"fakeredis://browser-{uuid.uuid4().hex[:6]}"
    a = await start("aiohttp", backplane=url, dev_tokens=True, instance_name="aiohttp")
    b = await start("fastapi", backplane=url, dev_tokens=True, instance_name="fastapi")
    alice = await _open(browser, a, "alice")
    bob = await _open(browser, b, "bob")
    assert (await alice.text_content("#instance")).startswith("on aiohttp")
    assert (await bob.text_content("#instance")).startswith("on fastapi")

    await _say(alice, "hello bob, from aiohttp")
    await _sees(bob, "hello bob, from aiohttp")
    await _say(bob, "hi alice, from fastapi")
    await _sees(alice, "hi alice, from fastapi")

    # user content is text, never markup
    evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>'
    await _say(bob, evil)
    await _sees(alice, "<script>window.pwned = 1</script>")
    assert await alice.evaluate("window.pwned") is None
    assert await alice.locator("#log b").count() == 0
    assert await alice.locator("#log img").count() == 0

    # stop alice's instance: her page notices and retries; restart it on the same port
    port = a.port
    await a.stop()
    await alice.wait_for_selector("#status.reconnecting", timeout=WAIT)
    # bob goes on talking while alice's server is down; an observer on bob's
    # instance sees each post delivered, so each is in the room's history
    async with wskit.connect(b, user="observer") as observer:
        await observer.join("lobby")
        for i in range(3):
            await _say(bob, f"while you were away {i}")
            assert (await observer.expect("message"))["content"] == f"while you were away {i}"
    a2 = await start("aiohttp", port=port, backplane=url, dev_tokens=True,
                     instance_name="aiohttp")
    await alice.wait_for_selector("#status.connected", timeout=30_000)
    await alice.wait_for_function(
        "() => document.querySelector('#instance').textContent.includes('aiohttp')")
    # rejoined her rooms by itself: the conversation goes on
    for _ in range(100):
        if a2.server and "lobby" in a2.server.hub.rooms():
            break
        await alice.wait_for_timeout(50)  # bounded poll for the rejoin frame to land
    assert a2.server is not None and "lobby" in a2.server.hub.rooms()
    # the page rejoined with `since` and was given what it missed, in order
    await _sees(alice, "while you were away 2")
    await _sees(alice, "3 missed message(s) recovered")
    texts = await alice.locator("#log li").all_text_contents()
    away = [t for t in texts if "while you were away" in t]
    assert [t[-1] for t in away] == ["0", "1", "2"], away  # each once, in order
    await _say(bob, "welcome back")
    await _sees(alice, "welcome back")
    await _say(alice, "thanks, still here")
    await _sees(bob, "thanks, still here")

    # a bad token is refused with 4001 and not retried
    page = await browser.new_page()
    await page.goto(a2.http_url)
    await page.fill("#token", "not-a-token")
    await page.click("#connect")
    await page.wait_for_selector("#status.rejected", timeout=WAIT)
    assert "invalid token" in await page.text_content("#status")


@pytest.mark.timeout(60)
async def test_dev_token_endpoint_is_off_unless_enabled(start, browser) -> None:
    srv = await start("fastapi")
    page = await browser.new_page()
    await page.goto(srv.http_url + "?user=mallory")
    await page.locator("#log li", has_text="development token endpoint is off").wait_for(
        timeout=WAIT)
    assert await page.get_attribute("#status", "class") == "disconnected"
