"""Make docs/screenshot.png: two browser tabs chatting across two instances.

    python docs/screenshot.py        (needs Debian's chromium and the test extra)
"""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.async_api import async_playwright

import wskit

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = Path(__file__).with_name("screenshot.png")


async def main() -> None:
    servers = [await wskit.serve(fw, name=f"shot-{fw}", dev_tokens=True, instance_name=fw,
                                 secret="screenshot-secret-0123456789abcdef0123")
               for fw in ("aiohttp", "fastapi")]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        pages = []
        for server, user in zip(servers, ("alice", "bob"), strict=True):
            page = await browser.new_page(viewport={"width": 640, "height": 380})
            await page.goto(f"{server.http_url}?user={user}&room=lobby")
            await page.wait_for_selector("#status.connected")
            pages.append(page)
        script = [(0, "Hi Bob! I am on the aiohttp instance."),
                  (1, "Hi Alice, and I am on FastAPI: Redis joins us."),
                  (1, "<b>markup</b> stays text"),
                  (0, "/msg bob a direct message, across instances too")]
        for who, text in script:
            await pages[who].fill("#message", text)
            await pages[who].click("#send")
            other = pages[1 - who]
            expected = text.split(" ", 2)[2] if text.startswith("/msg") else text
            await other.locator("#log li", has_text=expected).first.wait_for()
        shots = [Image.open(io.BytesIO(await page.screenshot())) for page in pages]
        await browser.close()
    for server in servers:
        await server.stop()
    gap = 12
    canvas = Image.new("RGB", (sum(s.width for s in shots) + gap, max(s.height for s in shots)),
                       "#8c959f")
    canvas.paste(shots[0], (0, 0))
    canvas.paste(shots[1], (shots[0].width + gap, 0))
    canvas.save(OUT)
    print(OUT)


if __name__ == "__main__":
    asyncio.run(main())
