"""Connections held: N idle clients with heartbeats on, per framework.

The server runs as ``python -m wskit serve`` in a child process (so its memory
and CPU are its own); this process holds N plain aiohttp WebSocket clients that
answer every app-level ping. Reported per framework: connect rate, the server's
RSS per connection, the server's CPU while idle (the cost of pings), pings
answered, connections closed (must be 0), and the time for one post to reach
all N.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from ..auth import issue_token

__all__ = ["run", "table"]


@dataclass
class Held:
    framework: str
    connections: int
    connect_per_s: float
    kb_per_connection: float
    idle_cpu_percent: float
    pings_answered: int
    closed: int
    post_reached: int
    post_fanout_ms: float


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(framework: str, n: int, interval: float, timeout: float,
                  hold: float) -> Held:
    secret = secrets.token_hex(32)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", "serve", "--framework", framework, "--port", "0",
        "--secret", secret, "--redis", "none", "--ping-interval", str(interval),
        "--ping-timeout", str(timeout), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
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
                await ws.send_str('{"type":"pong"}')
            elif frame.get("type") == "message":
                reached += 1
                if reached == n:
                    everyone.set()
        closed += 1

    async def connect(i: int) -> None:
        ws = await session.ws_connect(f"{url}?token={issue_token(f'u{i}', secret)}",
                                      autoping=True)
        await ws.receive()  # welcome
        sockets.append(ws)
        readers.append(asyncio.get_running_loop().create_task(serve_one(ws)))
        # the reader answers pings from here on; the join's reply is just a frame to it
        await ws.send_str('{"type":"join","roomId":"all","ref":1}')

    try:
        before = _rss_kb(proc.pid)
        t0 = time.perf_counter()
        for batch in range(0, n, 100):
            await asyncio.gather(*(connect(i) for i in range(batch, min(n, batch + 100))))
        connect_s = time.perf_counter() - t0
        cpu0, pings0 = _cpu_s(proc.pid), pings
        await asyncio.sleep(hold)  # the measured idle period, not synchronisation
        idle_cpu = (_cpu_s(proc.pid) - cpu0) / hold * 100
        pings_held = pings - pings0
        after = _rss_kb(proc.pid)
        poster = await session.ws_connect(f"{url}?token={issue_token('poster', secret)}")
        await poster.receive()
        await poster.send_str('{"type":"join","roomId":"all","ref":1}')
        await poster.receive()
        t1 = time.perf_counter()
        await poster.send_str('{"type":"message","roomId":"all","content":"hello, all"}')
        try:
            await asyncio.wait_for(everyone.wait(), 30)
        except asyncio.TimeoutError:
            pass
        fanout_ms = (time.perf_counter() - t1) * 1000
        await poster.close()
        return Held(framework, n, round(n / connect_s, 1), round((after - before) / n, 1),
                    round(idle_cpu, 1), pings_held, closed, reached, round(fanout_ms, 1))
    finally:
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        proc.terminate()
        await proc.wait()


async def run(n: int = 2000, interval: float = 0.5, timeout: float = 1.0,
              hold: float = 10.0) -> list[Held]:
    return [await measure(fw, n, interval, timeout, hold) for fw in ("aiohttp", "fastapi")]


def table(rows: list[Held]) -> str:
    head = ("framework", "connections", "connect/s", "KB/conn", "idle CPU %", "pings answered",
            "closed", "post reached", "fan-out ms")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(v) for v in asdict(r).values()) + " |")
    return "\n".join(lines)
