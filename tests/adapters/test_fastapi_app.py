"""``wskit.adapters.fastapi.create_app`` is a FastAPI app its owner can extend.

Data frames bypass Starlette's ``WebSocket.send`` (see the adapter's docstring);
these tests hold that a middleware the owner adds still sees every frame, in
order, that routes and the lifespan still work, and that without wskit's
middleware the transport falls back to Starlette's send.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

import wskit
from wskit.adapters.fastapi import StarletteTransport, create_app
from wskit.security.tokens import issue_token

pytestmark = pytest.mark.timeout(30)

SECRET = "fastapi-app-secret-0123456789abcdef0123"


class CountFrames:
    """The owner's ASGI middleware: records every text frame the app sends."""

    def __init__(self, app: Any, seen: list[dict[str, Any]]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send":
                self.seen.append(json.loads(message["text"]))
            await send(message)

        await self.app(scope, receive, counting_send)


async def _ws(session: aiohttp.ClientSession, base: str, user: str) -> Any:
    ws = await session.ws_connect(f"{base}/ws?token={issue_token(user, SECRET)}")
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome" and welcome["userId"] == user
    return ws


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = await ws.receive_json(timeout=5)
        if frame["type"] == kind:
            return frame


async def test_owner_middleware_and_routes_see_what_wskit_sends() -> None:
    server = wskit.ChatServer(secret=SECRET, backplane="none", ping_interval=None,
                              ping_timeout=None)
    app = create_app(server)  # manage=True: the app's lifespan starts and stops it
    seen: list[dict[str, Any]] = []
    app.add_middleware(CountFrames, seen=seen)

    @app.get("/extra")
    async def extra() -> dict[str, int]:
        return {"connections": len(server.connections)}

    handle = await wskit.serve_app(app, name="fastapi-owner-app")
    base = f"http://{handle.host}:{handle.port}"
    try:
        async with aiohttp.ClientSession() as session:
            alice, bob = await _ws(session, base, "alice"), await _ws(session, base, "bob")
            for ws in (alice, bob):
                await ws.send_json({"type": "join", "roomId": "r", "ref": 1})
                await _until(ws, "joined")
            for i in range(5):
                await alice.send_json({"type": "message", "roomId": "r",
                                       "content": f"m{i}", "ref": 10 + i})
            got = [(await _until(bob, "message"))["content"] for _ in range(5)]
            assert got == [f"m{i}" for i in range(5)]
            async with session.get(f"{base}/extra") as resp:
                assert await resp.json() == {"connections": 2}
            await alice.close()
            await bob.close()
    finally:
        await handle.stop()
    # the owner's middleware saw every frame wskit sent, each message in order
    broadcast = [f["content"] for f in seen if f["type"] == "message"]
    assert broadcast == [f"m{i}" for i in range(5)]
    assert sum(f["type"] == "welcome" for f in seen) == 2
    assert sum(f["type"] == "sent" for f in seen) == 5
    assert server.connections == []


class _FakeWebSocket:
    """Just what StarletteTransport reads at construction."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def send(self, message: dict[str, Any]) -> None:  # Starlette's WebSocket.send
        raise AssertionError("not expected")


def test_transport_uses_the_recorded_send_else_starlettes() -> None:
    async def recorded(message: Any) -> None: ...

    with_middleware = StarletteTransport(_FakeWebSocket({"wskit.send": recorded}))  # type: ignore[arg-type]
    assert with_middleware._send is recorded
    ws = _FakeWebSocket({})
    without = StarletteTransport(ws)  # type: ignore[arg-type]
    assert without._send == ws.send
