"""Connections held: N idle clients with heartbeats on, per framework, beside a floor.

The server runs in a child process (so its memory and CPU are its own): ``python
-m wskit serve`` as a user runs it (default backplane), or the raw aiohttp floor
of the fan-out benchmark (no heartbeat, nothing per connection but aiohttp's own).
This process holds N plain aiohttp WebSocket clients that answer every app-level
ping, once offering no extension and once offering permessage-deflate as every
browser does (``deflate``: whether the server took it is the server's policy; wskit
refuses it unless started with ``--compression``). Reported per server and mode:
connect rate, the server's RSS per connection, its peak RSS, its CPU while idle (the
cost of pings), pings answered, connections closed (must be 0), and the time for one
post to reach all N.

``interval``/``timeout``: the heartbeat (None: wskit's defaults, 20 s / 20 s). At
0.5 s / 1 s the idle CPU is mostly pings; with the defaults it is the memory of
connections that are really idle.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from ..core import protocol
from ..security.tokens import issue_token
from .procfs import cpu_seconds, status_kb

__all__ = ["run", "table"]


@dataclass
class Held:
    server: str
    offers_deflate: bool
    connections: int
    connect_per_s: float
    kb_per_connection: float
    peak_rss_mb: float
    idle_cpu_percent: float
    pings_answered: int
    closed: int
    post_reached: int
    post_fanout_ms: float


SERVERS = ("raw", "aiohttp", "fastapi")
_PONG = protocol.encode(protocol.pong_request())
_JOIN_ALL = protocol.encode(protocol.join_request("all", ref=1))


async def _start(server: str, secret: str, interval: float | None,
                 timeout: float | None) -> tuple[asyncio.subprocess.Process, str]:
    if server == "raw":
        args = ["-m", "wskit.bench.targets", "raw-aiohttp", "--sndbuf", "0"]
    else:
        args = ["-m", "wskit", "serve", "--framework", server, "--port", "0",
                "--secret", secret]
        if interval is not None and timeout is not None:
            args += ["--ping-interval", str(interval), "--ping-timeout", str(timeout)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    if server == "raw":  # READY host:port
        return proc, f"ws://{line.split()[1]}/ws?room=all"
    return proc, line


async def measure(server: str, n: int, interval: float | None, timeout: float | None,
                  hold: float, deflate: bool = False) -> Held:
    secret = secrets.token_hex(32)
    proc, url = await _start(server, secret, interval, timeout)
    pings = closed = reached = 0
    everyone = asyncio.Event()
    # limit=0: a ClientSession holds at most 100 connections by default, and each
    # WebSocket keeps its connection for good
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets: list[aiohttp.ClientWebSocketResponse[Any]] = []
    readers: list[asyncio.Task[None]] = []

    async def serve_one(ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        nonlocal pings, closed, reached
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame.get("type") == "ping":
                pings += 1
                await ws.send_str(_PONG)
            elif frame.get("type") == "message":
                reached += 1
                if reached == n:
                    everyone.set()
        closed += 1

    offer = 15 if deflate else 0  # aiohttp's client offers permessage-deflate when compress > 0

    async def connect(i: int) -> None:
        if server == "raw":  # the room is in the URL; there is no welcome
            ws = await session.ws_connect(url, autoping=True, compress=offer)
        else:
            ws = await session.ws_connect(f"{url}?token={issue_token(f'u{i}', secret)}",
                                          autoping=True, compress=offer)
            await ws.receive()  # welcome
        sockets.append(ws)
        readers.append(asyncio.get_running_loop().create_task(serve_one(ws)))
        # the reader answers pings from here on; the join's reply is just a frame to it
        if server != "raw":
            await ws.send_str(_JOIN_ALL)

    try:
        before = status_kb(proc.pid)
        t0 = time.perf_counter()
        for batch in range(0, n, 100):
            await asyncio.gather(*(connect(i) for i in range(batch, min(n, batch + 100))))
        connect_s = time.perf_counter() - t0
        cpu0, pings0 = cpu_seconds(proc.pid), pings
        await asyncio.sleep(hold)  # the measured idle period, not synchronisation
        idle_cpu = (cpu_seconds(proc.pid) - cpu0) / hold * 100
        pings_held = pings - pings0
        after = status_kb(proc.pid)
        if server == "raw":
            poster = await session.ws_connect(url)
        else:
            poster = await session.ws_connect(f"{url}?token={issue_token('poster', secret)}")
            await poster.receive()
            await poster.send_str(_JOIN_ALL)
            await poster.receive()
        t1 = time.perf_counter()
        await poster.send_str(protocol.encode(protocol.post_request("all", "hello, all")))
        try:
            await asyncio.wait_for(everyone.wait(), 30)
        except asyncio.TimeoutError:
            pass
        fanout_ms = (time.perf_counter() - t1) * 1000
        await poster.close()
        return Held(server, deflate, n, round(n / connect_s, 1), round((after - before) / n, 1),
                    round(status_kb(proc.pid, "VmHWM") / 1024, 1), round(idle_cpu, 1), pings_held, closed,
                    reached, round(fanout_ms, 1))
    finally:
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        if proc.stdin is not None:
            proc.stdin.close()  # the raw floor serves until its stdin closes
        proc.terminate()
        await proc.wait()


async def run(n: int = 2000, interval: float | None = 0.5, timeout: float | None = 1.0,
              hold: float = 10.0, servers: Sequence[str] = SERVERS,
              deflate: Sequence[bool] = (False, True)) -> list[Held]:
    """Every server, once per client mode in ``deflate`` (by default both)."""
    return [await measure(server, n, interval, timeout, hold, offer)
            for offer in deflate for server in servers]


def table(rows: list[Held]) -> str:
    head = ("server", "offers deflate", "connections", "connect/s", "KB/conn", "peak MB", "idle CPU %",
            "pings answered", "closed", "post reached", "fan-out ms")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(v) for v in asdict(r).values()) + " |")
    return "\n".join(lines)
