"""A chat with a typing indicator and read receipts, built on wskit without changing it.

Everything here is the application: two frame types of its own with a schema each,
one lifecycle hook, and wskit's server doing the rest (tokens, rooms, history, the
backplane, rate limits, authorization). Run two instances joined by one backplane,
on either framework::

    BP=redis://127.0.0.1:6379/0
    python examples/typing_receipts.py --framework aiohttp --port 8001 --backplane $BP --api-key "$KEY"
    python examples/typing_receipts.py --framework fastapi --port 8002 --backplane $BP --api-key "$KEY"

and let a backend job post into a room: ``python examples/backend_job.py``.

The frames (``docs/protocol.md``, "Custom frame types")::

    -> {"type": "app.typing", "roomId": "lobby", "active": true}
    <- {"type": "app.typing", "roomId": "lobby", "userId": "alice", "active": true}   (to the others)
    -> {"type": "app.read", "roomId": "lobby", "offset": 41, "ref": 7}
    <- {"type": "app.read", "roomId": "lobby", "userId": "bob", "offset": 41}        (to the others)
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import wskit
from wskit import ProtocolError


@dataclass
class Typing:
    roomId: str
    active: bool = True


@dataclass
class ReadUpTo:
    roomId: str
    offset: int

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ValueError("offset must be 0 or more")  # -> invalid_value


def install(server: wskit.ChatServer) -> None:
    """Register the application on ``server`` (do it on every instance)."""

    # action="post": whoever may post to the room may say they are typing there (the
    # server's one policy decides, docs/authorization.md)
    @server.on("app.typing", Typing, action="post")
    async def typing(ctx, frame: Typing) -> None:
        await ctx.publish(frame.roomId, {"type": "app.typing", "roomId": frame.roomId,
                                         "userId": ctx.user, "active": frame.active})

    @server.on("app.read", ReadUpTo, action="read")
    async def read(ctx, frame: ReadUpTo) -> None:
        page = await latest_offset(server, frame.roomId)
        if frame.offset > page:
            raise ProtocolError("app.not_yet", f"room {frame.roomId!r} is at offset {page}")
        await ctx.publish(frame.roomId, {"type": "app.read", "roomId": frame.roomId,
                                         "userId": ctx.user, "offset": frame.offset})

    # someone who leaves (or closes the tab) while typing is typing no more
    @server.on_leave
    async def stopped_typing(ctx, room: str) -> None:
        await ctx.publish(room, {"type": "app.typing", "roomId": room, "userId": ctx.user,
                                 "active": False})


async def latest_offset(server: wskit.ChatServer, room: str) -> int:
    """The room's latest offset, from the history every instance shares."""
    return int((await server.history(room, limit=1))["offset"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("aiohttp", "fastapi"), default="aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backplane", default=None, help="redis://... (default: in-process)")
    parser.add_argument("--api-key", default=None, help="turns on the HTTP API")
    args = parser.parse_args()
    server = wskit.ChatServer(backplane=args.backplane, api_key=args.api_key,
                              instance_name=f"example-{args.framework}")
    install(server)
    handle = await wskit.serve(args.framework, host=args.host, port=args.port, server=server)
    print(f"serving {handle.http_url} (WebSocket {handle.url})", flush=True)
    await handle.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
