"""Prometheus metrics of one :class:`~wskit.server.chat.ChatServer`: ``/metrics``.

Two halves, so that counting costs nothing on the hot path:

* :class:`Counts` is a handful of plain integers the server's modules bump as they
  work (``stats.deliveries += len(targets)``: one addition per post, not one per
  receiver; no lock, no label lookup). prometheus-client's own ``Counter.inc``
  takes a lock per call, which the fan-out loop should not pay.
* :class:`ServerMetrics` is the server's *own* ``CollectorRegistry`` (never the
  process-wide default one, so several servers in one process, as in a notebook or
  a test, never mix) with one collector that reads those integers, the hub and the
  backplane *when scraped*. Gauges such as the outbox depths are computed then,
  from the live connections, as a gauge histogram.

The names follow Prometheus' conventions (``_total`` counters, base units);
docs/api.md lists them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)

if TYPE_CHECKING:
    from .chat import ChatServer

__all__ = ["Counts", "ServerMetrics", "CONTENT_TYPE", "OUTBOX_BUCKETS"]

#: the ``Content-Type`` of ``/metrics`` (Prometheus text format 0.0.4)
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: upper bounds of the outbox depth histogram, in frames waiting (``Settings.outbox_limit``
#: is 1024 by default: a connection near the top is about to be closed with 4008)
OUTBOX_BUCKETS = (0, 1, 4, 16, 64, 256, 1024)


#: how many closes :attr:`Counts.recent_closes` keeps
RECENT = 20


class Counts:
    """What happened on one server, as plain integers (see the module docstring)."""

    __slots__ = ("connections", "joins", "posts", "directs", "deliveries", "rate_limited",
                 "history_reads", "recovered", "not_recovered", "api_publishes", "closes",
                 "recent_closes")

    def __init__(self) -> None:
        self.connections = 0      # connections accepted (authenticated or not)
        self.joins = 0            # join requests answered ``joined``
        self.posts = 0            # room posts accepted (a client's or the server API's)
        self.directs = 0          # direct messages accepted
        self.deliveries = 0       # frames handed to local connections by the fan-out
        self.rate_limited = 0     # frames dropped (or closed for) over the rate limit
        self.history_reads = 0    # history requests answered
        self.recovered = 0        # rejoins with ``since`` answered ``recovered: true``
        self.not_recovered = 0    # ... and ``recovered: false``
        self.api_publishes = 0    # posts through the server API / HTTP API
        self.closes: dict[int, int] = {}  # close code -> connections closed with it
        #: the last closes, newest last, as (time.time(), user or None, code, reason):
        #: what the inspector lists (a bounded deque: a flood of closes costs nothing)
        self.recent_closes: deque[tuple[float, str | None, int, str]] = deque(maxlen=RECENT)

    def closed(self, code: int | None, user: str | None = None, reason: str = "") -> None:
        if code is not None:
            code = int(code)  # a CloseCode is one key with its plain int (and a "4001" label)
            self.closes[code] = self.closes.get(code, 0) + 1
            self.recent_closes.append((time.time(), user, code, reason))

    def rejoined(self, recovered: Any) -> None:
        if recovered is True:
            self.recovered += 1
        elif recovered is False:
            self.not_recovered += 1


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class _Collector:
    """Reads one server's state at scrape time (prometheus-client's custom collector)."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration; names are fixed in collect()

    def collect(self) -> Iterator[Any]:
        server = self.server
        c: Counts = server.stats
        conns = [conn for conn in server.connections if not conn.closing]  # closing: gone
        info = InfoMetricFamily("wskit_server", "this instance")
        info.add_metric([], {"instance_id": server.instance_id,
                             "backplane": server.backplane.url if server.backplane else "none"})
        yield info
        yield _gauge("wskit_connections", "open WebSocket connections (not closing)",
                     len(conns))
        yield _gauge("wskit_rooms", "rooms with a member on this instance",
                     len(server.hub.rooms()))
        yield _counter("wskit_connections_accepted", "WebSocket connections accepted", c.connections)
        yield _counter("wskit_joins", "joins answered 'joined'", c.joins)
        yield _counter("wskit_posts", "room posts accepted (clients and the server API)",
                       c.posts)
        yield _counter("wskit_api_publishes", "room posts through the server or HTTP API",
                       c.api_publishes)
        yield _counter("wskit_directs", "direct messages accepted", c.directs)
        yield _counter("wskit_deliveries", "frames handed to this instance's connections "
                       "by the fan-out (room messages, directs, presence events)", c.deliveries)
        closes = CounterMetricFamily("wskit_closes", "connections closed, by close code",
                                     labels=["code"])
        for code, n in sorted(c.closes.items()):
            closes.add_metric([str(int(code))], n)  # str() of an IntEnum is its name on 3.10
        yield closes
        yield _counter("wskit_slow_reader_closes", "connections closed with 4008 (not reading)",
                       c.closes.get(4008, 0))
        yield _counter("wskit_rate_limited_frames", "frames refused over the rate limit",
                       c.rate_limited)
        yield _counter("wskit_history_reads", "history requests answered", c.history_reads)
        rec = CounterMetricFamily("wskit_recoveries", "rejoins with 'since', by their "
                                  "'recovered' answer", labels=["recovered"])
        rec.add_metric(["true"], c.recovered)
        rec.add_metric(["false"], c.not_recovered)
        yield rec
        bp = server.backplane
        yield _gauge("wskit_backplane_up", "1 while the backplane is connected and caught up "
                     "(1 without a backplane)", 1 if bp is None or bp.healthy else 0)
        yield _counter("wskit_backplane_reconnects", "backplane listener reconnections",
                       getattr(bp, "reconnects", 0))
        yield _gauge("wskit_draining", "1 while the server drains (stop, SIGTERM)",
                     1 if getattr(server, "draining", False) else 0)
        yield _outbox_histogram([conn.pending for conn in conns])  # O(connections) a scrape


def _outbox_histogram(depths: list[int]) -> GaugeHistogramMetricFamily:
    """The outbox depths of the open connections now (frames queued), as buckets."""
    # one pass: each depth counted in the first bucket that holds it, then summed up
    counts = [0] * (len(OUTBOX_BUCKETS) + 1)
    for depth in depths:
        counts[bisect_left(OUTBOX_BUCKETS, depth)] += 1
    cumulative = list(accumulate(counts))
    buckets = [(str(bound), float(n)) for bound, n in zip(OUTBOX_BUCKETS, cumulative)]
    buckets.append(("+Inf", float(len(depths))))
    return GaugeHistogramMetricFamily(
        "wskit_outbox_depth", "frames waiting in each open connection's outbox",
        buckets=buckets, gsum_value=float(sum(depths)))


class ServerMetrics:
    """One server's registry; :meth:`render` is the body of ``GET /metrics``."""

    def __init__(self, server: ChatServer) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(server))

    def render(self) -> bytes:
        return generate_latest(self.registry)
