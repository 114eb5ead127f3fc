"""Cross-instance fan-out over many rooms: one Redis against a Redis Cluster.

    python -m wskit bench cluster [--quick] [--json] [--rounds R]

Three wskit instances (aiohttp, FastAPI, aiohttp) run in one target process on a
backplane; 1,000 rooms each have one receiver on every instance that is not the
posting one, and three senders (one per instance, each a member of a third of the
rooms) post round-robin over their rooms with a window of posts in flight. Per
backplane: deliveries/s from the first post to the last delivery. Every backplane
runs in the same round, one after the other, rounds interleaved; the Redis servers
are private to the run (never the shared 6379):

* ``redis``: one ``redis-server``;
* ``cluster-1``, ``cluster-2``, ``cluster-3``: Redis Clusters of 1, 2 and 3 masters
  (no replicas), sharded pub/sub: how throughput grows with shards.

On a machine with few cores the servers, Redis and this load generator share the
cores, so what this shows is the *cost* of the cluster path on the instances, not
the capacity a cluster adds across machines (docs/benchmarks.md says more).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..devtools.localcluster import LocalCluster, available
from ..devtools.localredis import LocalRedis
from .fanout import WSKIT, Target, WSClient, ws_connect
from .procfs import cpu_seconds

WINDOW = 64
SETUPS = ("redis", "cluster-1", "cluster-2", "cluster-3")


@dataclass
class Row:
    setup: str
    round: int
    deliveries_per_s: float
    complete: bool
    extra: dict[str, Any] = field(default_factory=dict)


async def measure(url: str, rooms: int, posts: int) -> tuple[float, bool]:
    target = Target("wskit-3x", url)
    clients: list[WSClient] = []
    try:
        addresses = target.addresses
        expected = posts * 2  # each post reaches the two other instances' receivers
        got = 0
        done = asyncio.get_running_loop().create_future()
        acked = [0, 0, 0]
        joined = 0
        all_joined = asyncio.get_running_loop().create_future()
        names = [f"room{i}" for i in range(rooms)]
        joins = 2 * rooms + rooms  # every receiver once, every room once by its sender

        def on_joined() -> None:
            nonlocal joined
            joined += 1
            if joined >= joins and not all_joined.done():
                all_joined.set_result(None)

        def on_receive(payload: bytes) -> None:
            nonlocal got
            if b"B!" in payload and b'"type":"message"' in payload:
                got += 1
                if got >= expected and not done.done():
                    done.set_result(None)
            elif b'"type":"joined"' in payload:
                on_joined()

        assert WSKIT.join is not None
        for i, name in enumerate(names):
            for k in range(3):
                if k != i % 3:
                    c = await ws_connect(*addresses[k], WSKIT.path(f"r{i}-{k}", ""), on_receive)
                    c.send_text(WSKIT.join(name))
                    clients.append(c)
        senders = []
        for k in range(3):
            def on_ack(payload: bytes, k: int = k) -> None:
                if b'"type":"sent"' in payload:
                    acked[k] += 1
                elif b'"type":"joined"' in payload:
                    on_joined()
            s = await ws_connect(*addresses[k], WSKIT.path(f"sender{k}", ""), on_ack)
            for name in names[k::3]:
                s.send_text(WSKIT.join(name))
            senders.append(s)
            clients.append(s)
        await asyncio.wait_for(all_joined, 120)
        started = time.perf_counter()
        sent = [0, 0, 0]
        order = itertools.cycle(range(3))
        per_sender = posts // 3
        deadline = time.monotonic() + 60
        while min(sent) < per_sender and time.monotonic() < deadline:
            k = next(order)
            if sent[k] >= per_sender:
                continue
            if sent[k] - acked[k] >= WINDOW:
                await asyncio.sleep(0)  # let acknowledgements in
                continue
            room = names[k::3][sent[k] % len(names[k::3])]
            senders[k].send_text(WSKIT.post(room, f"B!{sent[k]}"))
            sent[k] += 1
        expected = sum(sent) * 2
        if got >= expected and not done.done():
            done.set_result(None)
        try:
            await asyncio.wait_for(done, max(1.0, deadline - time.monotonic()))
            complete = True
        except asyncio.TimeoutError:
            complete = False
        return got / (time.perf_counter() - started), complete
    finally:
        for c in clients:
            c.close()
        target.stop()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(rounds: int, rooms: int, posts: int,
        progress: Any = _progress) -> list[Row]:
    if not available() or shutil.which("redis-server") is None:
        raise SystemExit("bench cluster needs redis-server and redis-cli")
    rows: list[Row] = []
    for rnd in range(rounds):
        for setup in SETUPS:
            progress(f"round {rnd + 1}/{rounds}  {setup}")
            backend = (LocalRedis() if setup == "redis"
                       else LocalCluster(masters=int(setup[-1]), replicas=0))
            with backend:
                procs = (list(backend.procs.values()) if isinstance(backend, LocalCluster)
                         else [backend.proc])
                pids = [proc.pid for proc in procs if proc is not None]
                before = [cpu_seconds(pid) for pid in pids]
                rate, ok = asyncio.run(measure(backend.url, rooms, posts))
                cpu = [cpu_seconds(pid) - b for pid, b in zip(pids, before)]
            # the second method: where the Redis work went (CPU seconds per shard)
            rows.append(Row(setup, rnd, rate, ok, {"redis_cpu_s": sorted(cpu, reverse=True)}))
    return rows


def summarize(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for setup in SETUPS:
        mine = [r for r in rows if r.setup == setup]
        ratios = []
        for r in mine:
            base = next(b for b in rows if b.round == r.round and b.setup == "redis")
            ratios.append(r.deliveries_per_s / base.deliveries_per_s)
        busiest = [r.extra["redis_cpu_s"][0] for r in mine]
        total = [sum(r.extra["redis_cpu_s"]) for r in mine]
        out.append({"setup": setup, "deliveries_per_s": statistics.median(
            r.deliveries_per_s for r in mine), "vs_one_redis": statistics.median(ratios),
            "busiest_shard_cpu_s": statistics.median(busiest),
            "all_shards_cpu_s": statistics.median(total),
            "complete": all(r.complete for r in mine), "rounds": len(mine)})
    return out


def main(args: argparse.Namespace) -> int:
    rounds = args.rounds or (1 if args.quick else 3)
    posts = 6_000 if args.quick else 30_000
    rows = run(rounds, rooms=1000, posts=posts)
    summary = summarize(rows)
    if args.json:
        print(json.dumps({"summary": summary, "rounds": [vars(r) for r in rows]}, indent=2))
    else:
        print(f"1000 rooms, 3 instances, {posts} posts, 2 deliveries each; "
              f"{rounds} round(s), medians")
        print(f"{'setup':10s} {'deliv/s':>9s} {'x one Redis':>12s} {'busiest shard CPU s':>20s} "
              f"{'all shards CPU s':>17s}")
        for s in summary:
            print(f"{s['setup']:10s} {s['deliveries_per_s']:9.0f} {s['vs_one_redis']:12.2f} "
                  f"{s['busiest_shard_cpu_s']:20.2f} {s['all_shards_cpu_s']:17.2f}"
                  + ("" if s["complete"] else "  (incomplete)"))
    return 0 if all(s["complete"] for s in summary) else 1

