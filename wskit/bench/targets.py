"""The servers the fan-out benchmark compares, each run in a process of its own.

    python -m wskit.bench.targets KIND [--redis URL] [--sndbuf BYTES]

prints ``READY <base url>`` once listening and serves until stdin closes.

==================  ==========================================================
kind                what
==================  ==========================================================
``raw-aiohttp``     the floor: a plain aiohttp handler that sends one pre-encoded
                    string to a plain list of sockets, nothing else
``raw-fastapi``     the same loop as a FastAPI route under uvicorn: the framework's
                    own cost per frame, for scale (not a floor for the ratios)
``raw-asgi``        the same, each frame handed to uvicorn's ASGI ``send`` directly
                    (as wskit's adapter does): the ceiling of any FastAPI app
``wskit-aiohttp``   wskit on aiohttp with the default backplane, as ``python -m
                    wskit serve`` runs it (fakeredis in the process)
``wskit-fastapi``   the same on FastAPI/uvicorn
``wskit-*-none``    the same two standalone (``backplane="none"``)
``wskit-*-scraped`` the same two, with ``GET /metrics`` scraped every 100 ms while
                    measured (what metrics cost: the counting is always on)
``seed-aiohttp``    the seed's aiohttp manager as written (+ ``import time``)
``seed-fastapi``    the seed's FastAPI manager as written
``wskit-2x``        two wskit instances (aiohttp + FastAPI) in one process,
                    joined by a backplane (``--redis``; default fakeredis)
``wskit-2x-nohist`` the same with history off (``history_size=0``)
``wskit-3x``        three instances (aiohttp, FastAPI, aiohttp) in one process on
                    ``--redis`` (a Redis or a ``redis-cluster://`` URL)
==================  ==========================================================
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import socket
import sys
import time
from typing import Any

from aiohttp import WSMsgType, web
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from ..adapters.fastapi import SEND_KEY, DirectSend
from ..runner import serve as runner
from ..runner.serve import LOOPS, serve, serve_app
from ..runner.serve import run as run_on

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
#: Every target's sockets get this fixed kernel send buffer (accepted sockets inherit
#: SO_SNDBUF from the listening one). Loopback would otherwise autotune it to
#: megabytes, and a frozen reader would not back up into the server within a run
#: as it does over a real network. The same for every target, the floor included.
SNDBUF = 64 * 1024


_bind = runner.bind_socket
KINDS = ("raw-aiohttp", "raw-fastapi", "raw-asgi", "wskit-aiohttp", "wskit-fastapi",
         "wskit-aiohttp-none", "wskit-fastapi-none", "seed-aiohttp", "seed-fastapi",
         "wskit-2x", "wskit-2x-nohist", "wskit-3x", "wskit-aiohttp-deflate", "wskit-fastapi-deflate",
         "wskit-aiohttp-scraped", "wskit-fastapi-scraped")


def raw_app() -> web.Application:
    """The floor: the least a room broadcast can do on aiohttp. The room is chosen
    once, in the URL (``/ws?room=R``), so a post needs no parsing at all."""
    rooms: dict[str, list[web.WebSocketResponse]] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        sockets = rooms.setdefault(request.query.get("room", "bench"), [])
        sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data.startswith('{"type":"message"'):
                    text = msg.data  # forwarded as is: no parsing, no encoding
                    for other in sockets:
                        if other is not ws:
                            await other.send_str(text)
        finally:
            sockets.remove(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


def raw_fastapi_app(direct: bool = False) -> FastAPI:
    """:func:`raw_app`'s loop as a FastAPI WebSocket route (its annotations are
    resolved from this module's globals: hence the imports at the top).

    ``direct``: each frame given straight to the ASGI ``send`` (recorded by wskit's
    :class:`DirectSend`), one message dict per broadcast: what uvicorn itself costs
    per frame, nothing of Starlette's ``send`` path (the ``raw-asgi`` target)."""
    app = FastAPI()
    if direct:
        app.add_middleware(DirectSend)
    rooms: dict[str, list[Any]] = {}

    @app.websocket("/ws")
    async def handler(ws: WebSocket, room: str = "bench") -> None:
        await ws.accept()
        sockets = rooms.setdefault(room, [])
        me = ws.scope[SEND_KEY] if direct else ws
        sockets.append(me)
        try:
            while True:
                text = await ws.receive_text()
                if not text.startswith('{"type":"message"'):
                    continue
                if direct:
                    message = {"type": "websocket.send", "text": text}
                    for other in sockets:
                        if other is not me:
                            await other(message)
                else:
                    for other in sockets:
                        if other is not me:
                            await other.send_text(text)
        except WebSocketDisconnect:
            pass
        finally:
            sockets.remove(me)

    return app


async def run(kind: str, redis: str | None) -> None:
    handles = []
    if kind == "raw-aiohttp":
        handles.append(await serve_app(raw_app(), name="bench"))
    elif kind == "raw-fastapi":
        handles.append(await serve_app(raw_fastapi_app(), name="bench"))
    elif kind == "raw-asgi":
        handles.append(await serve_app(raw_fastapi_app(direct=True), name="bench"))
    elif kind in ("wskit-aiohttp", "wskit-fastapi", "wskit-aiohttp-scraped",
                  "wskit-fastapi-scraped"):
        # -scraped: the same server; the load generator scrapes its /metrics meanwhile.
        # the default, as `python -m wskit serve` gives it: a fakeredis backplane in-process
        # (or, as KIND@redis, the real Redis at --redis, in a namespace of its own)
        handles.append(await serve(kind.split("-")[1], name="bench",
                                   backplane=redis or "fakeredis://bench",
                                   namespace=f"bench{time.time_ns()}",
                                   secret=SECRET, max_message_size=1 << 20))
    elif kind in ("wskit-aiohttp-deflate", "wskit-fastapi-deflate"):
        # --compression: permessage-deflate accepted when the client offers it (bench --deflate)
        handles.append(await serve(kind.split("-")[1], name="bench",
                                   backplane=redis or "fakeredis://bench",
                                   namespace=f"bench{time.time_ns()}", compression=True,
                                   secret=SECRET, max_message_size=1 << 20))
    elif kind in ("wskit-aiohttp-none", "wskit-fastapi-none"):
        handles.append(await serve(kind.split("-")[1], name="bench", backplane="none",
                                   secret=SECRET, max_message_size=1 << 20))
    elif kind in ("wskit-2x", "wskit-2x-nohist"):
        namespace = f"bench{time.time_ns()}"  # private to this run, even on a shared Redis
        history = 0 if kind.endswith("-nohist") else 100
        for fw in ("aiohttp", "fastapi"):
            handles.append(await serve(fw, name=f"bench-{fw}", backplane=redis or "fakeredis://bench",
                                       secret=SECRET, max_message_size=1 << 20,
                                       namespace=namespace, history_size=history))
    elif kind == "wskit-3x":
        namespace = f"bench{time.time_ns()}"
        for i, fw in enumerate(("aiohttp", "fastapi", "aiohttp")):
            handles.append(await serve(fw, name=f"bench-{i}", backplane=redis or "fakeredis://bench",
                                       secret=SECRET, namespace=namespace))
    elif kind == "seed-aiohttp":
        seed_a: Any = importlib.import_module("wskit.course.seed.aiohttp_manager")
        seed_a.time = time  # the one missing import
        seed_a.SECRET_KEY = SECRET
        handles.append(await serve_app(seed_a.make_app(), name="bench"))
    elif kind == "seed-fastapi":
        seed_f: Any = importlib.import_module("wskit.course.seed.fastapi_manager")
        handles.append(await serve_app(seed_f.app, name="bench"))
    else:
        raise SystemExit(f"unknown target {kind!r}")
    print("READY " + " ".join(f"{h.host}:{h.port}" for h in handles), flush=True)
    loop = asyncio.get_running_loop()
    # serve until the benchmark closes our stdin (or dies)
    await loop.run_in_executor(None, sys.stdin.read)
    for handle in handles:
        await handle.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--sndbuf", type=int, default=SNDBUF,
                        help="the listening socket's SO_SNDBUF; 0: the kernel's own (autotuned)")
    args = parser.parse_args()
    if args.sndbuf:
        size = args.sndbuf

        def bind_with_sndbuf(host: str, port: int) -> socket.socket:
            sock = _bind(host, port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            return sock

        runner.bind_socket = bind_with_sndbuf
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the seeds log every broken pipe
    run_on(run(args.kind, args.redis), loop=args.loop)


if __name__ == "__main__":
    main()
