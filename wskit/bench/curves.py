"""Cost curves: what a delivery costs as receivers, rooms and message size grow.

    python -m wskit bench curves [--quick] [--rounds R] [--json] [--plot FILE]

Three sweeps, each against the raw aiohttp floor, wskit on aiohttp and wskit on
FastAPI (both with the default backplane, as ``python -m wskit serve`` runs),
every point in a fresh server process:

* **receivers**: one room of N receivers (10 ... 5,000);
* **rooms**: R rooms of 10 receivers, each with its own sender, all posting at
  once (1 ... 1,000 rooms, so up to 11,000 connections);
* **size**: one room of 100 receivers, posts of 100 B ... 60 KB.

At each point: deliveries/s with every post sent at once (free-running, the
kernel's own socket buffers), and the p99 latency of posts paced at 30% of the
floor's rate at that point (the same offered load for every target). Rounds
interleave the targets, as in the fan-out benchmark; ratios are within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .fanout import LATENCY_FRACTION, Room, Target, _machine

TARGETS = ("raw-aiohttp", "wskit-aiohttp", "wskit-fastapi")
SWEEPS: dict[str, tuple[int, ...]] = {
    "receivers": (10, 100, 1000, 5000),
    "rooms": (1, 10, 100, 1000),
    "size": (100, 1000, 10_000, 60_000),
}
QUICK: dict[str, tuple[int, ...]] = {
    "receivers": (10, 100, 1000),
    "rooms": (1, 10, 100),
    "size": (100, 10_000, 60_000),
}
ROOM_SIZE = 10     # receivers per room in the rooms sweep
SIZE_ROOM = 100    # receivers in the size sweep


@dataclass
class Point:
    sweep: str
    x: int
    target: str
    round: int
    deliveries_per_s: float
    complete: bool
    p99_ms: float | None
    rate: float  # posts/s offered in the latency run (all rooms together)


def _posts(deliveries: int, per_post: int, low: int = 10, high: int = 5000) -> int:
    return max(low, min(high, deliveries // per_post))


async def _point(kind: str, sweep: str, x: int, rnd: int, rate: float | None,
                 quick: bool) -> Point:
    budget = 40_000 if quick else 150_000  # deliveries per throughput run
    target = Target(kind, sndbuf=0)
    rooms: list[Room] = []
    try:
        if sweep == "rooms":
            rooms = [Room(target, ROOM_SIZE, room=f"bench{j}") for j in range(x)]
        else:
            rooms = [Room(target, x if sweep == "receivers" else SIZE_ROOM)]
        for room in rooms:
            await room.connect()
        await asyncio.gather(*(room.sync() for room in rooms))
        receivers = sum(room.n for room in rooms)
        payload = x if sweep == "size" else 0
        per_room = _posts(budget // len(rooms), rooms[0].n,
                          low=5 if sweep == "rooms" else 20,
                          high=max(20, 20_000_000 // (payload * rooms[0].n)) if payload else 5000)
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(room.throughput(per_room, payload=payload, window=None)
                                          for room in rooms))
        elapsed = time.perf_counter() - started
        delivered = sum(sum(room.counts) for room in rooms)
        deliveries_per_s = delivered / elapsed
        if rate is None:  # the floor sets the offered load for this point and round
            rate = LATENCY_FRACTION * deliveries_per_s / receivers * len(rooms)
        per_room_rate = rate / len(rooms)
        count = max(10, min(60, int(per_room_rate * 3)))
        latencies = [lat for lats in await asyncio.gather(*(
            room.latency(per_room_rate, count, payload=max(0, payload - 20)) for room in rooms))
            for lat in lats]
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 \
            if latencies else None
        return Point(sweep, x, kind, rnd, deliveries_per_s, all(c for _, c in outcomes), p99,
                     rate)
    finally:
        for room in rooms:
            room.close()
        target.stop()


async def run(sweeps: dict[str, tuple[int, ...]], rounds: int, quick: bool,
              progress: Callable[[str], None]) -> list[Point]:
    plan = [(r, s, x) for r in range(rounds) for s, xs in sweeps.items() for x in xs]
    points: list[Point] = []
    for step, (rnd, sweep, x) in enumerate(plan, 1):
        rate: float | None = None
        for kind in TARGETS:  # the floor first: it sets the offered load
            progress(f"{step}/{len(plan)} round {rnd + 1} {sweep}={x} {kind}")
            point = await _point(kind, sweep, x, rnd, rate, quick)
            rate = point.rate
            points.append(point)
    return points


def summarize(points: list[Point]) -> list[dict[str, Any]]:
    rows = []
    for sweep, x, target in sorted({(p.sweep, p.x, p.target) for p in points},
                                   key=lambda k: (k[0], k[1], TARGETS.index(k[2]))):
        mine = [p for p in points if (p.sweep, p.x, p.target) == (sweep, x, target)]
        floors = {p.round: p for p in points
                  if (p.sweep, p.x, p.target) == (sweep, x, "raw-aiohttp")}
        ratios = [p.deliveries_per_s / floors[p.round].deliveries_per_s for p in mine]
        p99s = [p.p99_ms / floors[p.round].p99_ms for p in mine  # type: ignore[operator]
                if p.p99_ms and floors[p.round].p99_ms]
        rows.append({
            "sweep": sweep, "x": x, "target": target, "rounds": len(mine),
            "deliveries_per_s": statistics.median(p.deliveries_per_s for p in mine),
            "ratio_to_raw": statistics.median(ratios),
            "p99_ms": statistics.median([p.p99_ms for p in mine if p.p99_ms is not None] or [0]),
            "p99_ratio_to_raw": statistics.median(p99s) if p99s else None,
            "complete": all(p.complete for p in mine),
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    unit = {"receivers": "receivers", "rooms": "rooms of 10", "size": "bytes"}
    lines = [f"{'sweep':9} {'x':>6} {'target':14} {'deliv/s':>9} {'x raw':>6} {'p99 ms':>7} "
             f"{'p99 x raw':>9}"]
    for r in rows:
        p99r = "-" if r["p99_ratio_to_raw"] is None else f"{r['p99_ratio_to_raw']:.2f}"
        lines.append(f"{r['sweep']:9} {r['x']:>6} {r['target']:14} {r['deliveries_per_s']:>9.0f} "
                     f"{r['ratio_to_raw']:>6.2f} {r['p99_ms']:>7.2f} {p99r:>9}"
                     + ("" if r["complete"] else "  (did not finish)"))
    lines.append("x: " + "; ".join(f"{k} in {v}" for k, v in unit.items())
                 + ". Throughput free-running; p99 at 30% of the floor's rate.")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]]) -> Any:
    """The curves as a matplotlib figure: deliveries/s (top) and p99 (bottom) per sweep."""
    import matplotlib.pyplot as plt

    sweeps = list(SWEEPS)
    fig, axes = plt.subplots(2, len(sweeps), figsize=(4 * len(sweeps), 6.5))
    labels = {"receivers": "receivers in one room", "rooms": "rooms of 10 receivers",
              "size": "message size (bytes), 100 receivers"}
    for col, sweep in enumerate(sweeps):
        for target in TARGETS:
            mine = sorted((r for r in rows if r["sweep"] == sweep and r["target"] == target),
                          key=lambda r: r["x"])
            if not mine:
                continue
            xs = [r["x"] for r in mine]
            axes[0][col].plot(xs, [r["deliveries_per_s"] for r in mine], marker="o", label=target)
            axes[1][col].plot(xs, [r["p99_ms"] for r in mine], marker="o", label=target)
        for row in (0, 1):
            axes[row][col].set_xscale("log")
            axes[row][col].set_xlabel(labels[sweep])
        axes[0][col].set_ylabel("deliveries/s")
        axes[1][col].set_ylabel("p99 latency (ms)")
        axes[1][col].set_yscale("log")
    axes[0][0].legend()
    fig.suptitle("Cost curves: wskit against the raw aiohttp floor")
    fig.tight_layout()
    return fig


def plot(rows: list[dict[str, Any]], path: str) -> None:
    figure(rows).savefig(path, dpi=110)


def main(args: argparse.Namespace) -> int:
    sweeps = QUICK if args.quick else SWEEPS
    rounds = args.rounds or 1

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    points = asyncio.run(run(sweeps, rounds, args.quick, progress))
    rows = summarize(points)
    if getattr(args, "plot", None):
        plot(rows, args.plot)
    if args.json:
        print(json.dumps({"machine": _machine(), "seconds": round(time.monotonic() - started),
                          "rows": rows, "points": [asdict(p) for p in points]}, indent=2))
    else:
        print(f"machine: {_machine()}; {rounds} round(s); {time.monotonic() - started:.0f}s")
        print(table(rows))
    return 0
