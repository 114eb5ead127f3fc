"""The chat page fills a gap while connected, as wskit.Client does (docs/protocol.md).

Here ``room_repair`` is off on the page's instance, so that a listener outage there
reaches the page as a jump in offsets (tests/client/test_gap_repair.py makes the
same gap for the Python client): the page must hold what comes after the jump, ask
the history for what lies between, and show every post once, in offset order;
what the history no longer holds is a visible "N messages lost" notice.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from browsers import NEEDS_CHROMIUM, WAIT
from polling import until

import wskit
from wskit.core.envelope import encode
from wskit.testing import GatedBackplane

pytestmark = NEEDS_CHROMIUM

#: every line of the page's log: [class, who ("bob:", "" for a notice or own post), text]
LOG = """() => [...document.querySelectorAll('#log li')].map((li) =>
  [li.className, (li.querySelector('.who') || {}).textContent || '', li.lastChild.textContent])"""


class Frames:
    """The frames a page sent and received on its WebSocket, decoded."""

    def __init__(self, page: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def histories(self) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == "history"]


async def _open(browser: Any, server: wskit.RunningServer, user: str) -> tuple[Any, Frames]:
    page = await browser.new_page()
    frames = Frames(page)  # before the page opens its socket
    await page.goto(f"{server.http_url}?user={user}&room=lobby")
    await page.wait_for_selector("#status.connected", timeout=WAIT)
    await page.wait_for_selector('#rooms li[data-room="lobby"]', timeout=WAIT)
    return page, frames


async def _sees(page: Any, text: str) -> None:
    await page.locator("#log li", has_text=text).first.wait_for(timeout=WAIT)


async def _said(page: Any, user: str) -> list[str]:
    """What the page shows of ``user``'s posts, in order."""
    return [text for _, who, text in await page.evaluate(LOG) if who == user + ":"]


async def _gap(start: Any, framework: str, history_size: int) -> tuple[
        GatedBackplane, GatedBackplane, wskit.RunningServer, wskit.RunningServer]:
    """Two instances on one bus: the page's (``room_repair`` off, its listener gated)
    and another. Returns both backplanes, then both servers."""
    bus = f"page-gap-{uuid.uuid4().hex[:8]}"
    here, there = GatedBackplane(bus), GatedBackplane(bus)
    a = await start(framework, backplane=here, history_size=history_size, room_repair=False,
                    dev_tokens=True)
    b = await start("aiohttp", backplane=there, history_size=history_size)
    return here, there, a, b


@pytest.mark.timeout(90)
async def test_posts_lost_in_a_listener_outage_are_shown_once_in_order(
        start, browser, framework) -> None:
    here, there, a, b = await _gap(start, framework, history_size=200)
    page, frames = await _open(browser, a, "alice")
    async with wskit.connect(b, user="bob") as bob:
        await bob.join("lobby")
        before = await bob.send("lobby", "before")
        await _sees(page, "before")

        here.drop()                                  # the page's instance hears nothing...
        for i in range(30):
            await bob.send("lobby", f"during {i}")   # ...of these
        await here.restore()
        for i in range(5):                           # the first shows the jump; the rest
            await bob.send("lobby", f"after {i}")    # may come while the page repairs
        await _sees(page, "after 4")

    expected = ["before"] + [f"during {i}" for i in range(30)] + [f"after {i}" for i in range(5)]
    assert await _said(page, "bob") == expected
    # one history request, from the last offset shown; nothing was lost
    assert [(f["roomId"], f["after"]) for f in frames.histories()] == [
        ("lobby", before["offset"])]
    assert not [t for _, _, t in await page.evaluate(LOG) if "lost" in t or "reset" in t]


@pytest.mark.timeout(90)
async def test_what_the_history_no_longer_holds_is_a_visible_notice(start, browser) -> None:
    here, there, a, b = await _gap(start, "fastapi", history_size=10)
    page, _ = await _open(browser, a, "alice")
    async with wskit.connect(b, user="bob") as bob:
        await bob.join("lobby")
        await bob.send("lobby", "before")
        await _sees(page, "before")
        here.drop()
        for i in range(30):                          # more than the 10 the history keeps
            await bob.send("lobby", f"during {i}")
        await here.restore()
        await bob.send("lobby", "after")
        await _sees(page, "after")

    log = await page.evaluate(LOG)
    lost = [i for i, (cls, _, text) in enumerate(log) if cls == "system" and "lost" in text]
    assert [log[i][2] for i in lost] == ["#lobby: 21 messages lost"]  # during 0-20
    shown = [i for i, (_, who, _) in enumerate(log) if who == "bob:"]
    assert [log[i][2] for i in shown] == (
        ["before"] + [f"during {i}" for i in range(21, 30)] + ["after"])
    assert shown[0] < lost[0] < shown[1]             # where the messages are missing


@pytest.mark.timeout(90)
async def test_own_posts_are_no_gap_and_duplicates_are_shown_once(
        start, browser, framework) -> None:
    here, there, a, b = await _gap(start, framework, history_size=200)
    page, frames = await _open(browser, a, "alice")
    async with wskit.connect(b, user="bob") as bob:
        await bob.join("lobby")
        for i in range(4):                           # alice's own offsets sit between bob's
            await page.fill("#message", f"mine {i}")
            await page.click("#send")
            await until(lambda n=i + 1: len(  # its `sent` has come back to the page
                [f for f in frames.received if f.get("type") == "sent"]) == n)
            sent = await bob.expect("message")       # stored and published
            assert sent["content"] == f"mine {i}"
            await bob.send("lobby", f"theirs {i}")
            await _sees(page, f"theirs {i}")
        assert frames.histories() == []              # no repair: nothing was missing
        assert not [f for f in frames.received if f.get("type") == "message"
                    and f.get("userId") == "alice"]  # the server never echoed them

        # the same offsets again on the bus (a replay, another writer): not shown twice
        seen = [f for f in frames.received if f.get("type") == "message"]
        assert a.server is not None and a.server.relay is not None
        channel = a.server.relay.room_channel("lobby")
        for f in seen[:2]:
            frame = {k: v for k, v in f.items() if k not in ("offset", "epoch")}
            await there.publish(channel, encode("replayer/c1", json.dumps(frame),
                                                f["offset"], f["epoch"]))
        await bob.send("lobby", "last")
        await _sees(page, "last")
    assert len([f for f in frames.received if f.get("type") == "message"]) == len(seen) + 3
    assert await _said(page, "bob") == [f"theirs {i}" for i in range(4)] + ["last"]
    mine = [t for cls, who, t in await page.evaluate(LOG) if t.startswith("mine")]
    assert mine == [f"mine {i}" for i in range(4)]
    assert frames.histories() == []
