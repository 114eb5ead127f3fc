"""permessage-deflate (RFC 7692): one policy on both frameworks, off unless asked for.

Every browser offers the extension. uvicorn accepts it by default, aiohttp only when
told to; wskit decides the same way on both (``Settings.compression``, ``--compression``),
because a compressed connection keeps zlib state of its own and a broadcast is then
compressed once per receiver. The client here is the ``websockets`` library's, which
offers the extension exactly as a browser does.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect as ws_connect

FRAMEWORKS = ["aiohttp", "fastapi"]


async def _joined(url: str, room: str):  # type: ignore[no-untyped-def]
    ws = await ws_connect(url, open_timeout=10)  # offers permessage-deflate by default
    await ws.send(json.dumps({"type": "join", "roomId": room}))
    while json.loads(await ws.recv(decode=True))["type"] != "joined":
        pass
    return ws


def _offered_and_taken(ws) -> bool:  # type: ignore[no-untyped-def]
    return bool(ws.response.headers.get("Sec-WebSocket-Extensions"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("compression", [False, True])
async def test_deflate_is_accepted_only_when_asked_for(start, framework: str, compression: bool) -> None:
    server = await start(framework, compression=compression, ping_interval=None,
                         ping_timeout=None)
    alice = await _joined(server.url_for("alice"), "lobby")
    bob = await _joined(server.url_for("bob"), "lobby")
    try:
        assert _offered_and_taken(alice) is compression
        assert _offered_and_taken(bob) is compression
        # a broadcast arrives whole, whether or not frames are compressed (the aiohttp
        # fast path writes ready-made frames only to uncompressed connections)
        text = "hello " * 200  # long enough that deflate would change the bytes
        await alice.send(json.dumps({"type": "message", "roomId": "lobby", "content": text}))
        while (frame := json.loads(await bob.recv(decode=True)))["type"] != "message":
            pass
        assert frame["content"] == text and frame["userId"] == "alice"
    finally:
        await alice.close()
        await bob.close()
