"""A raw WebSocket peer for tests: no de-duplication, no repair of its own.

What such a peer gets in order is the server's doing (a browser page, a client of
another language); wskit.Client's own repair is tested apart.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp


class Peer:
    """Every message frame received, in order; answers the server's pings."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    async def next(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            if frame["type"] == "ping" and "ref" not in frame:
                await self.ws.send_json({"type": "pong"})
            if frame["type"] == "message":
                self.messages.append(frame)
            if frame["type"] == kind:
                return frame

    async def until(self, content: str) -> list[dict[str, Any]]:
        """Messages received up to the one with ``content`` (kept from earlier ones too)."""
        while not self.messages or self.messages[-1]["content"] != content:
            await self.next("message")
        return self.messages

    async def join(self, room: str, since: dict[str, Any] | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "roomId": room, "ref": "j"}
        if since is not None:
            frame["since"] = since
        await self.ws.send_json(frame)
        return await self.next("joined")

    async def post(self, room: str, text: str) -> dict[str, Any]:
        await self.ws.send_json({"type": "message", "roomId": room, "content": text,
                                 "ref": text})
        return await self.next("sent")


async def connect_peer(session: aiohttp.ClientSession, srv: Any, user: str) -> Peer:
    """A peer of ``user`` on running server ``srv``, past its ``welcome``."""
    peer = Peer(await session.ws_connect(srv.url_for(user)))
    await peer.next("welcome")
    return peer
