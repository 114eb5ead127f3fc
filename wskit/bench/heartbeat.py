"""How fast does the app-level heartbeat find a silent peer?

For each (interval, timeout) setting, a client answers pings normally, falls
silent at a random moment, and the time until the server closes it is measured.
The bound is ``interval + timeout``: the next ping goes out at most ``interval``
after the client fell silent, and the close follows ``timeout`` later.

    python -m wskit bench heartbeat            # a table
    python -m wskit bench heartbeat --json
"""

from __future__ import annotations

import asyncio
import random
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..client.aio import Client
from ..runner.serve import serve

DEFAULT_SETTINGS = ((0.2, 0.2), (0.5, 0.2), (0.2, 0.5), (0.5, 0.5), (1.0, 0.5))
#: scheduling on a loaded machine (a shared hub, CI); the bound itself is interval + timeout
SLACK = 1.0


@dataclass
class Detection:
    framework: str
    interval: float
    timeout: float
    times: list[float]

    @property
    def bound(self) -> float:
        return self.interval + self.timeout

    @property
    def worst(self) -> float:
        return max(self.times)

    @property
    def within_bound(self) -> bool:
        return self.worst <= self.bound + SLACK

    def row(self) -> dict:
        return {**asdict(self), "median": statistics.median(self.times), "worst": self.worst,
                "bound": self.bound, "within_bound": self.within_bound}


async def measure(framework: str, interval: float, timeout: float, trials: int = 5,
                  seed: int = 1) -> Detection:
    rng = random.Random(seed)
    handle = await serve(framework, name=f"hb-bench-{framework}", backplane="none",
                         secret=secrets.token_hex(32), ping_interval=interval,
                         ping_timeout=timeout)
    loop = asyncio.get_running_loop()
    times = []
    try:
        for _ in range(trials):
            client = Client(handle, user="zombie")
            await client.connect()
            try:
                await client.wait_pings(1, timeout=interval + timeout + 5)
                # fall silent at a random phase of the ping cycle: the measured
                # delay then spans [timeout, interval + timeout]
                await asyncio.sleep(rng.uniform(0, interval))
                client.answer_pings = False
                silent_at = loop.time()
                await client.wait_closed(timeout=interval + timeout + 10)
                times.append(loop.time() - silent_at)
            finally:
                await client.close()
    finally:
        await handle.stop()
    return Detection(framework, interval, timeout, times)


async def run(settings: Sequence[tuple[float, float]] = DEFAULT_SETTINGS, trials: int = 5,
              frameworks: Sequence[str] = ("aiohttp", "fastapi")) -> list[Detection]:
    results = []
    for interval, timeout in settings:
        for fw in frameworks:
            results.append(await measure(fw, interval, timeout, trials))
    return results


def table(results: Sequence[Detection]) -> str:
    lines = [f"{'framework':9} {'interval':>8} {'timeout':>7} {'median':>7} {'worst':>7} "
             f"{'bound':>6}  ok"]
    for r in results:
        row = r.row()
        lines.append(f"{r.framework:9} {r.interval:8.2f} {r.timeout:7.2f} {row['median']:7.3f} "
                     f"{r.worst:7.3f} {r.bound:6.2f}  {'yes' if r.within_bound else 'NO'}")
    return "\n".join(lines)
