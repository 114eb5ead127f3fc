"""A second load generator, to cross-check the fan-out benchmark's burst figures.

    python -m wskit.bench.crosscheck [raw-aiohttp,wskit-aiohttp,wskit-fastapi [ROUNDS]]

The fan-out benchmark's clients are a minimal protocol of its own; this one uses
500 aiohttp ``ClientSession`` WebSocket clients (what an independent check would
write), sends 600 posts at once and times them until every receiver has all of
them. Targets are fresh processes with the kernel's own socket buffers; rounds
interleave; ratios are to the first target of the same round.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp

from ..core import protocol
from .fanout import DIALECTS, Target

N, M = 500, 600
DEFAULT = "raw-aiohttp,wskit-aiohttp,wskit-fastapi"


async def burst(kind: str) -> float:
    """Deliveries/s of one burst of M posts to N receivers on a fresh ``kind``."""
    target = Target(kind, sndbuf=0)
    dialect = DIALECTS[kind]
    host, port = target.addresses[0]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    got, counting = [0] * N, [False] * N
    everyone = asyncio.Event()
    finished = [0]

    async def read(i: int, ws: Any) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            if '"type":"ping"' in msg.data:
                await ws.send_str(protocol.encode(protocol.pong_request()))
            elif "GO!" in msg.data:
                counting[i] = True
            elif counting[i] and "M!" in msg.data:
                got[i] += 1
                if got[i] == M:
                    finished[0] += 1
                    if finished[0] == N:
                        everyone.set()

    try:
        sockets: list[Any] = []
        for start in range(0, N, 100):
            sockets += await asyncio.gather(*(
                session.ws_connect(f"http://{host}:{port}{dialect.path(f'r{i}', 'bench')}")
                for i in range(start, min(N, start + 100))))
        readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
        sender = await session.ws_connect(f"http://{host}:{port}{dialect.path('sender', 'bench')}")
        if dialect.join:
            for ws in sockets + [sender]:
                await ws.send_str(dialect.join("bench"))
        while not all(counting):
            await sender.send_str(dialect.post("bench", "GO!"))
            await asyncio.sleep(0.2)  # pacing the marker until every join is done
        started = time.perf_counter()
        for i in range(M):
            await sender.send_str(dialect.post("bench", f"M!{i}"))
        await asyncio.wait_for(everyone.wait(), 120)
        rate = N * M / (time.perf_counter() - started)
        for ws in sockets + [sender]:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        return rate
    finally:
        await session.close()
        target.stop()


async def main(kinds: list[str], rounds: int) -> None:
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:
            rates[kind].append(await burst(kind))
    for kind in kinds:
        ratios = [a / b for a, b in zip(rates[kind], rates[kinds[0]])]
        print(f"{kind:16} deliveries/s {[round(r) for r in rates[kind]]}  × {kinds[0]} "
              f"{[round(r, 2) for r in ratios]}  median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    asyncio.run(main((sys.argv[1] if len(sys.argv) > 1 else DEFAULT).split(","),
                     int(sys.argv[2]) if len(sys.argv) > 2 else 3))
