"""Fan-out benchmark: wskit against the seed's managers and a raw aiohttp floor.

    python -m wskit bench [--quick] [--json] [--rounds R] [--sizes 10,100,1000]

This process is the load generator; every target server runs fresh in a process
of its own (:mod:`wskit.bench.targets`), so the two share the machine's cores
the same way for every target. Rounds interleave the targets (A B C ... A B C)
and every ratio compares two figures measured in the same round: the machine is
shared and noisy, and only side-by-side figures mean something.

The clients are a minimal WebSocket client written on ``asyncio.Protocol`` (a
handshake, masked sends, frames counted from the byte stream): a full client
library would spend more CPU per frame than the servers under test, and the
benchmark would mostly measure itself.

Per target and receiver count N:

* **deliveries/s**: one sender posts M messages to a room of N receivers, with
  at most ``WINDOW`` messages in flight (so no server's queue limit is hit);
  deliveries = N x M over the time from the first post to the last delivery;
* **latency p50/p99**: posts paced at a fixed rate, the same for every target
  in a round (a fraction of the raw floor's rate in that round), each carrying
  its send time;
* **peak RSS** of the server process (VmHWM), and **memory per idle
  connection** ((RSS with N idle joined clients - RSS before) / N);
* **stalled reader** (largest N only): one more receiver joins and stops
  reading; the healthy receivers' deliveries/s and the server's RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import protocol
from ..core.protocol import PING
from ..security.tokens import issue_token
from .procfs import status_kb
from .targets import SECRET, SNDBUF

WINDOW = 32
TIMEOUT = 30.0
STALL_TIMEOUT = 10.0  # the seeds never finish with a frozen reader: cut them off
STALL_PAYLOAD = 4096
LATENCY_FRACTION = 0.3  # offered load: this fraction of the raw floor's messages/s
#: paced posts per latency run: as many as fit in LATENCY_SECONDS, within these bounds.
#: A post's N samples come together, so the top 1% of samples over 100 posts is the
#: slowest post's alone: one scheduling hiccup on a shared machine decides the p99.
#: Over 400 posts it is the slowest four's.
LATENCY_POSTS = (100, 400)
LATENCY_SECONDS = 4.0
CORE_TARGETS = ("raw-aiohttp", "wskit-aiohttp", "wskit-fastapi", "seed-aiohttp", "seed-fastapi")
_STAMP = re.compile(rb"L(\d+\.\d+)L")
_PING = PING.encode()
_PONG = protocol.encode(protocol.pong_request())


# -- a minimal WebSocket client -------------------------------------------------

#: ``--deflate``: every load-generator client offers permessage-deflate (RFC 7692), as
#: every browser does; a server that accepts it sends compressed frames, inflated here
DEFLATE = False
_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: removed by the sender, put back to inflate


class WSClient(asyncio.Protocol):
    """Just enough RFC 6455 to count frames, read a timestamp and send masked text
    (and, when the server took the offer, RFC 7692 to inflate what it compressed)."""

    def __init__(self, on_text: Callable[[bytes], None] | None = None) -> None:
        self.on_text = on_text
        self.inflater: Any = None  # a zlib decompressobj once deflate is negotiated
        self.fresh_inflater = False  # server_no_context_takeover: one per message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head_lines = bytes(buf[:end]).split(b"\r\n")
            status = head_lines[0]
            del buf[:end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            for line in head_lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-extensions" and b"permessage-deflate" in value:
                    self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self.fresh_inflater = b"server_no_context_takeover" in value
            self.upgraded.set_result(None)
        pos, size, on_text = 0, len(buf), self.on_text
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if size - pos < head + length:
                break
            if buf[pos] & 0x0F == 1:  # text frame (unfragmented)
                payload = bytes(buf[pos + head:pos + head + length])
                if buf[pos] & 0x40 and self.inflater is not None:  # RSV1: compressed
                    if self.fresh_inflater:
                        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    payload = self.inflater.decompress(payload + _TAIL)
                if payload == _PING:
                    # answer wskit's heartbeat like any client: a run (or its
                    # connect phase) longer than interval + timeout is not cut off
                    self.send_text(_PONG)
                elif on_text is not None:
                    on_text(payload)
            pos += head + length
        if pos:
            del buf[:pos]

    def send_text(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x81, 0xFF]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
                  ).to_bytes(n, "big") if n else b""
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def ws_connect(host: str, port: int, path: str,
                     on_text: Callable[[bytes], None] | None = None,
                     rcvbuf: int | None = None) -> WSClient:
    loop = asyncio.get_running_loop()
    if rcvbuf is None:
        _, client = await loop.create_connection(lambda: WSClient(on_text), host, port)
    else:
        # a small receive window, so a frozen reader backs up into the server quickly
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        _, client = await loop.create_connection(lambda: WSClient(on_text), sock=sock)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    assert client.transport is not None
    client.transport.write((
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{_OFFER if DEFLATE else ''}\r\n"
    ).encode())
    await asyncio.wait_for(client.upgraded, 10)
    return client


# -- how each target spells things ------------------------------------------------

@dataclass
class Dialect:
    path: Callable[[str, str], str]  # (user, room) -> the request path
    join: Callable[[str], str] | None
    post: Callable[[str, str], str]


def _wskit_path(user: str, room: str = "") -> str:
    return f"/ws?token={issue_token(user, SECRET, ttl=3600)}"


def _json(obj: dict[str, str]) -> str:
    """A frame of another protocol (the seed's); wskit's own come from wskit.core.protocol."""
    return json.dumps(obj, separators=(",", ":"))


WSKIT = Dialect(_wskit_path, lambda r: protocol.encode(protocol.join_request(r)),
                lambda r, c: protocol.encode(protocol.post_request(r, c)))
DIALECTS = {
    "raw-aiohttp": Dialect(lambda u, r: f"/ws?room={r}", None, WSKIT.post),
    "raw-fastapi": Dialect(lambda u, r: f"/ws?room={r}", None, WSKIT.post),
    "raw-asgi": Dialect(lambda u, r: f"/ws?room={r}", None, WSKIT.post),
    "wskit-aiohttp": WSKIT, "wskit-fastapi": WSKIT, "wskit-aiohttp-none": WSKIT,
    "wskit-fastapi-none": WSKIT, "wskit-2x": WSKIT, "wskit-2x-nohist": WSKIT, "wskit-3x": WSKIT,
    "wskit-aiohttp-deflate": WSKIT, "wskit-fastapi-deflate": WSKIT,
    "wskit-aiohttp-scraped": WSKIT, "wskit-fastapi-scraped": WSKIT,
    "seed-aiohttp": WSKIT,
    "seed-fastapi": Dialect(lambda u, r: f"/ws/{u}",
                            lambda r: _json({"action": "join_room", "room_id": r}),
                            lambda r, c: _json({"action": "message", "room_id": r,
                                                "content": c})),
}


# -- one target process -------------------------------------------------------------

#: ``--pin``: (the load generator's CPUs, every target's CPUs), or None (the kernel
#: schedules both anywhere). On two cores, unpinned, the server and the load generator
#: fight for the same core at times, and same-round ratios scatter (0.5 to 1.0 for one
#: target in one run); pinned, each has a core of its own and ratios are steadier.
PINNED: tuple[set[int], set[int]] | None = None


def pin(split: bool) -> str | None:
    """Give the load generator and the targets disjoint CPUs; a description, or None
    if this machine cannot (fewer than 2 CPUs, or no ``sched_setaffinity``)."""
    global PINNED
    if not split or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    PINNED = (set(cpus[:half]), set(cpus[half:]))
    os.sched_setaffinity(0, PINNED[0])
    return f"load generator on CPU {cpus[:half]}, servers on CPU {cpus[half:]}"


class Target:
    def __init__(self, kind: str, redis: str | None = None,
                 sndbuf: int | None = None, loop: str = "asyncio") -> None:
        self.kind = kind
        args = [sys.executable, "-m", "wskit.bench.targets", kind]
        if redis:
            args += ["--redis", redis]
        if sndbuf is not None:
            args += ["--sndbuf", str(sndbuf)]
        args += ["--loop", loop]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if PINNED:  # before it starts any thread (threads inherit the main thread's CPUs)
            os.sched_setaffinity(self.proc.pid, PINNED[1])
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"target {kind} did not start: {line!r}")
        self.addresses = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))
                          for a in line.split()[1:]]

    def memory(self, field_name: str = "VmRSS") -> int:
        """Bytes, from /proc (Linux)."""
        return status_kb(self.proc.pid, field_name) * 1024

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the room ------------------------------------------------------------------------

class Room:
    """N receivers and a sender on one target; counts what each receiver gets."""

    def __init__(self, target: Target, n: int, room: str = "bench") -> None:
        self.target, self.n = target, n
        self.dialect = DIALECTS[target.kind]
        self.room = room
        self.counts = [0] * n
        self.counting = [False] * n
        self.reached: dict[int, int] = {}
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.latencies: list[float] | None = None
        self.receivers: list[WSClient] = []
        self.sender: WSClient | None = None
        self.staller: WSClient | None = None

    def _on_text(self, i: int) -> Callable[[bytes], None]:
        def on_text(payload: bytes) -> None:
            if not self.counting[i]:
                if b"GO!" in payload:
                    self.counting[i] = True
                    self._count_ready()
                return
            if self.latencies is not None:
                stamp = _STAMP.search(payload)
                if stamp is None:
                    return  # an ack or ping, not a post
                self.latencies.append(time.perf_counter() - float(stamp.group(1)))
            elif b"M!" not in payload:
                return
            c = self.counts[i] = self.counts[i] + 1
            r = self.reached[c] = self.reached.get(c, 0) + 1
            if r == self.n:
                waiter = self.waiters.pop(c, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        return on_text

    def _count_ready(self) -> None:
        if all(self.counting):
            waiter = self.waiters.pop(0, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _address(self, i: int) -> tuple[str, int]:
        return self.target.addresses[i % len(self.target.addresses)]

    async def connect(self) -> None:
        d = self.dialect
        for start in range(0, self.n, 100):
            batch = range(start, min(self.n, start + 100))
            self.receivers += await asyncio.gather(*(
                ws_connect(*self._address(i), d.path(f"r{i}", self.room), self._on_text(i))
                for i in batch))
        self.sender = await ws_connect(*self.target.addresses[0], d.path("sender", self.room),
                                       lambda p: None)
        if d.join:
            for client in self.receivers + [self.sender]:
                client.send_text(d.join(self.room))

    async def add_staller(self) -> None:
        d = self.dialect
        self.staller = await ws_connect(*self.target.addresses[0], d.path("staller", self.room), None,
                                        rcvbuf=4096)
        if d.join:
            self.staller.send_text(d.join(self.room))
        assert self.staller.transport is not None
        self.staller.transport.pause_reading()  # a frozen tab: reads nothing, ever

    async def sync(self) -> None:
        """Post a marker until every receiver has seen one: all joins are done."""
        self.counting = [False] * self.n
        ready = self.waiters[0] = asyncio.get_running_loop().create_future()
        assert self.sender is not None
        deadline = time.monotonic() + 60
        pause = 0.2
        while not ready.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.target.kind}: receivers never all joined")
            self.sender.send_text(self.dialect.post(self.room, "GO!"))
            await asyncio.wait({ready}, timeout=pause)
            # gentler while joins are still being processed (a thousand rooms sync at once)
            pause = min(2.0, pause * 1.5)

    async def _wait_reached(self, k: int, deadline: float) -> bool:
        if self.reached.get(k, 0) >= self.n:
            return True
        waiter = self.waiters.setdefault(k, asyncio.get_running_loop().create_future())
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
        return bool(done)

    async def throughput(self, messages: int, timeout: float = TIMEOUT,
                         payload: int = 0, window: int | None = WINDOW) -> tuple[float, bool]:
        """Deliveries/s for ``messages`` posts; False if it did not finish in ``timeout``.

        ``window``: at most this many posts not yet delivered everywhere; None sends
        them all at once (free-running: as fast as TCP takes them)."""
        await self.sync()
        assert self.sender is not None
        self.counts, self.reached, self.latencies = [0] * self.n, {}, None
        padding = "x" * payload
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        complete = True
        for i in range(messages):
            if window is not None and i >= window and \
                    not await self._wait_reached(i - window + 1, deadline):
                complete = False
                break
            self.sender.send_text(self.dialect.post(self.room, f"M!{i}{padding}"))
        if complete:
            complete = await self._wait_reached(messages, deadline)
        elapsed = time.perf_counter() - started
        return sum(self.counts) / elapsed, complete

    async def latency(self, rate: float, messages: int, payload: int = 0) -> list[float]:
        await self.sync()
        assert self.sender is not None
        self.latencies = []
        self.counts, self.reached = [0] * self.n, {}
        interval, start = 1.0 / rate, time.perf_counter()
        for i in range(messages):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load
            self.sender.send_text(self.dialect.post(
                self.room, f"L{time.perf_counter():.6f}L{'x' * payload}"))
        await self._wait_reached(messages, time.monotonic() + TIMEOUT)
        latencies, self.latencies = self.latencies, None
        return latencies

    def close(self) -> None:
        for client in self.receivers + [c for c in (self.sender, self.staller) if c]:
            client.close()


# -- rounds ------------------------------------------------------------------------------

@dataclass
class Result:
    target: str
    n: int
    round: int
    deliveries_per_s: float = 0.0
    complete: bool = True
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float = 0.0
    per_connection_kb: float = 0.0
    stalled_deliveries_per_s: float | None = None
    stalled_complete: bool | None = None
    stalled_rss_growth_kb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def messages_for(n: int, quick: bool) -> int:
    total = 60_000 if quick else 200_000  # deliveries per throughput run
    return max(50, min(5000, total // n))


async def measure(kind: str, n: int, rnd: int, quick: bool, rate: float | None,
                  stall: bool, redis: str | None = None,
                  stall_timeout: float = STALL_TIMEOUT, derive_rate: bool = False,
                  free: bool = False, messages: int | None = None,
                  loop: str = "asyncio") -> Result:
    """One target, fresh process. ``rate``: posts/s for the latency run; with
    ``derive_rate`` (the floor) it is LATENCY_FRACTION of this target's own
    throughput, and is recorded in ``extra["rate"]`` for the others of the round.
    ``free``: throughput free-running (no window) on the kernel's own socket buffers."""
    target = Target(kind, redis, sndbuf=0 if free else None, loop=loop)
    result = Result(kind if not redis else f"{kind}@redis", n, rnd)
    room = Room(target, n)
    scrapes = [0]
    scraper = (asyncio.ensure_future(_scrape(*target.addresses[0], scrapes))
               if kind.endswith("-scraped") else None)
    try:
        before = target.memory()
        await room.connect()
        await room.sync()
        result.per_connection_kb = (target.memory() - before) / n / 1024
        count = messages or messages_for(n, quick)
        result.deliveries_per_s, result.complete = await room.throughput(
            count, window=None if free else WINDOW)
        if derive_rate:
            rate = result.extra["rate"] = LATENCY_FRACTION * result.deliveries_per_s / n
        if rate is not None:
            posts = 40 if quick else max(LATENCY_POSTS[0],
                                         min(LATENCY_POSTS[1], int(rate * LATENCY_SECONDS)))
            lat = sorted(await room.latency(rate, posts))
            if lat:
                result.p50_ms = statistics.median(lat) * 1000
                result.p99_ms = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        if stall:
            # Same posts with and without a frozen reader; posts are STALL_PAYLOAD bytes,
            # so the frozen reader's socket fills up within the run.
            stalled_messages = 300
            result.extra["unstalled_big"], _ = await room.throughput(
                stalled_messages, payload=STALL_PAYLOAD)
            await room.add_staller()
            await room.sync()
            before = target.memory()
            result.stalled_deliveries_per_s, result.stalled_complete = await room.throughput(
                stalled_messages, timeout=stall_timeout, payload=STALL_PAYLOAD)
            result.stalled_rss_growth_kb = (target.memory() - before) / 1024
        result.peak_rss_mb = target.memory("VmHWM") / 2**20
        if scraper is not None:
            result.extra["scrapes"] = scrapes[0]
    finally:
        if scraper is not None:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await scraper
        room.close()
        target.stop()
    return result


#: two instances joined by a backplane, with history (the default) and without
CROSS_TARGETS = ("wskit-2x", "wskit-2x-nohist")
#: with ``WSKIT_REDIS_URL`` set, these also run as ``KIND@redis`` on that Redis: the two
#: instances always, wskit on one framework when named (what the in-process fakeredis
#: of the default costs, against a real Redis)
REDIS_TARGETS = CROSS_TARGETS + ("wskit-aiohttp", "wskit-fastapi")
#: measured only when named (--targets): wskit standalone, and the raw loop on FastAPI
#: (what uvicorn and Starlette cost per frame, with nothing of wskit's) and on the bare
#: ASGI send (what uvicorn alone costs)
EXTRA_TARGETS = ("wskit-aiohttp-none", "wskit-fastapi-none", "raw-fastapi", "raw-asgi",
                 "wskit-aiohttp-deflate", "wskit-fastapi-deflate", "wskit-aiohttp-scraped",
                 "wskit-fastapi-scraped")
#: how often a ``-scraped`` target's /metrics is read while it is measured (Prometheus'
#: default is every 15 s: this is 150 times as often)
SCRAPE_INTERVAL = 0.1


async def _scrape(host: str, port: int, counts: list[int]) -> None:
    """GET /metrics every SCRAPE_INTERVAL until cancelled; counts the 200s in counts[0]."""
    while True:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            answer = await reader.read()
            if answer.startswith(b"HTTP/1.") and answer.split(b" ", 2)[1] == b"200":
                counts[0] += 1
        finally:
            writer.close()
        await asyncio.sleep(SCRAPE_INTERVAL)  # a scrape period, not synchronisation


async def run(sizes: list[int], rounds: int, quick: bool, progress: Callable[[str], None],
              stall_timeout: float = STALL_TIMEOUT,
              targets: Sequence[str] | None = None, free: bool = False,
              messages: int | None = None, loop: str = "asyncio") -> list[Result]:
    """``targets``: a subset to measure (the raw floor is always measured, for ratios).
    ``free``/``messages``: see :func:`measure`."""
    results: list[Result] = []
    redis = os.environ.get("WSKIT_REDIS_URL")
    largest = max(sizes)
    kinds = CORE_TARGETS + EXTRA_TARGETS + CROSS_TARGETS + (
        tuple(f"{k}@redis" for k in REDIS_TARGETS) if redis else ())
    if not targets:
        kinds = tuple(k for k in kinds if k not in EXTRA_TARGETS
                      and not (k.endswith("@redis") and k.split("@")[0] in CORE_TARGETS))
    if targets:
        kinds = tuple(k for k in kinds if k in targets or k == "raw-aiohttp")
    plan = [(r, n, kind) for r in range(rounds) for n in sizes for kind in kinds]
    raw_rate: dict[tuple[int, int], float] = {}
    for step, (rnd, n, kind) in enumerate(plan, 1):
        done = int(20 * (step - 1) / len(plan))
        progress(f"[{'#' * done}{'.' * (20 - done)}] {step}/{len(plan)}  round {rnd + 1}  "
                 f"N={n}  {kind}")
        base = kind.split("@")[0]
        rate = None
        if (rnd, n) in raw_rate and (base in CORE_TARGETS or base in EXTRA_TARGETS):
            rate = raw_rate[(rnd, n)]
        floor = base == "raw-aiohttp"
        res = await measure(base, n, rnd, quick, rate,
                            stall=(n == largest and kind in CORE_TARGETS),
                            redis=redis if kind.endswith("@redis") else None,
                            stall_timeout=stall_timeout, derive_rate=floor, free=free,
                            messages=messages, loop=loop)
        if floor:  # the common offered load for this round and size, in posts/s
            raw_rate[(rnd, n)] = res.extra["rate"]
        results.append(res)
    return results


# -- report -----------------------------------------------------------------------------------

def summarize(results: list[Result]) -> list[dict[str, Any]]:
    """Medians over rounds, and each target's ratio to the raw floor of the same round."""
    rows = []
    keys = sorted({(r.n, r.target) for r in results}, key=lambda k: (k[0], _order(k[1])))
    for n, target in keys:
        mine = [r for r in results if r.n == n and r.target == target]
        ratios, p99_ratios = [], []
        for r in mine:
            floor = next(f for f in results if f.n == n and f.round == r.round
                         and f.target == "raw-aiohttp")
            ratios.append(r.deliveries_per_s / floor.deliveries_per_s)
            if r.p99_ms is not None and floor.p99_ms:
                p99_ratios.append(r.p99_ms / floor.p99_ms)
        row: dict[str, Any] = {
            "n": n, "target": target, "rounds": len(mine),
            "deliveries_per_s": statistics.median(r.deliveries_per_s for r in mine),
            "ratio_to_raw": statistics.median(ratios),
            "complete": all(r.complete for r in mine),
            "p50_ms": _median([r.p50_ms for r in mine]),
            "p99_ms": _median([r.p99_ms for r in mine]),
            "p99_ratio_to_raw": _median(p99_ratios),
            "peak_rss_mb": statistics.median(r.peak_rss_mb for r in mine),
            "per_connection_kb": statistics.median(r.per_connection_kb for r in mine),
        }
        if target.startswith("wskit-2x") and "-nohist" not in target:
            # history on over history off, same round, same backplane
            off = target.replace("wskit-2x", "wskit-2x-nohist")
            pairs = [(r, next((o for o in results if o.n == n and o.round == r.round
                               and o.target == off), None)) for r in mine]
            vs = [r.deliveries_per_s / o.deliveries_per_s for r, o in pairs if o is not None]
            row["history_on_vs_off"] = _median(vs)
        stalled = [r for r in mine if r.stalled_deliveries_per_s is not None]
        if stalled:
            row["stalled_vs_unstalled"] = statistics.median(
                r.stalled_deliveries_per_s / r.extra["unstalled_big"]  # type: ignore[operator]
                for r in stalled)
            row["stalled_complete"] = all(r.stalled_complete for r in stalled)
            row["stalled_rss_growth_kb"] = _median([r.stalled_rss_growth_kb for r in stalled])
        rows.append(row)
    return rows


def _order(target: str) -> int:
    order = (CORE_TARGETS + EXTRA_TARGETS + CROSS_TARGETS
             + tuple(f"{k}@redis" for k in REDIS_TARGETS))
    return order.index(target) if target in order else len(order)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def table(rows: list[dict[str, Any]], stall_timeout: float = STALL_TIMEOUT) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    head = (f"{'N':>5} {'target':16} {'deliv/s':>9} {'x raw':>6} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'p99 x raw':>9} {'peak MB':>7} {'KB/conn':>7} {'stalled':>8} {'growth KB':>9}")
    lines = [head]
    for r in rows:
        stalled = r.get("stalled_vs_unstalled")
        stalled_txt = "-" if stalled is None else (
            f"{stalled:.2f}" + ("" if r.get("stalled_complete") else "!"))
        lines.append(
            f"{r['n']:>5} {r['target']:16} {r['deliveries_per_s']:>9.0f} "
            f"{r['ratio_to_raw']:>6.2f} {fmt(r['p50_ms'], '7.2f')} {fmt(r['p99_ms'], '7.2f')} "
            f"{fmt(r['p99_ratio_to_raw'], '9.2f')} {r['peak_rss_mb']:>7.1f} "
            f"{r['per_connection_kb']:>7.1f} {stalled_txt:>8} "
            f"{fmt(r.get('stalled_rss_growth_kb'), '9.0f')}"
            + ("" if r["complete"] else "  (did not finish: stalled)")
            + (f"  history on/off {r['history_on_vs_off']:.2f}"
               if r.get("history_on_vs_off") is not None else ""))
    lines.append("x raw: ratio to the raw aiohttp floor in the same round (median over rounds). "
                 "stalled: healthy receivers' deliveries/s with one frozen reader / without; "
                 f"'!' = the run stalled and was cut off after {stall_timeout:.0f}s.")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [1000] if args.quick else [10, 100, 1000])
    rounds = args.rounds or (1 if args.quick else 3)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    stall_timeout = 5.0 if args.quick else STALL_TIMEOUT
    targets = args.targets.split(",") if getattr(args, "targets", None) else None
    free = bool(getattr(args, "free", False))
    messages = getattr(args, "messages", None)
    loop = getattr(args, "loop", "asyncio")
    pinned = pin(bool(getattr(args, "pin", False)))
    global DEFLATE
    DEFLATE = bool(getattr(args, "deflate", False))
    results = asyncio.run(run(sizes, rounds, args.quick, progress, stall_timeout, targets,
                              free=free, messages=messages, loop=loop))
    rows = summarize(results)
    if args.json:
        seconds = round(time.monotonic() - started)
        print(json.dumps({"machine": _machine(), "pinned": pinned, "seconds": seconds, "deflate": DEFLATE,
                          "rows": rows, "raw": [r.__dict__ for r in results]}, indent=2))
    else:
        mode = ("free-running (all posts at once, kernel socket buffers)" if free
                else f"windowed ({WINDOW} posts in flight, {SNDBUF // 1024} KiB send buffers)")
        clients = "clients offer permessage-deflate" if DEFLATE else "clients offer no extension"
        print(f"machine: {_machine()}; {rounds} round(s); servers on {loop}; {clients}; throughput {mode}; "
              f"{time.monotonic() - started:.0f}s" + (f"; {pinned}" if pinned else ""))
        print(table(rows, stall_timeout))
    return 0


def _machine() -> str:
    import platform

    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
