"""What one server looks like now, as JSON: the inspector's data (``GET /api/inspect``).

Read at request time from the state the server keeps anyway (the hub, the
connections, :class:`~wskit.server.metrics.Counts`), so it costs the hot path
nothing; one call is O(connections + rooms). The counters are totals since the
server started: a viewer that wants a rate (messages per second) takes the
difference of two snapshots over their ``time``s, as Prometheus does.

Usernames and room ids are in it, never tokens or message contents: it is behind
the API key, as the rest of ``/api/``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chat import ChatServer

#: at most this many connections are listed one by one (the counts cover all)
MAX_LISTED = 500


def snapshot(server: ChatServer) -> dict[str, Any]:
    """This instance now: rooms with their local members, connections with their
    outbox fill, counters, recent closes, backplane state."""
    hub, c, settings = server.hub, server.stats, server.settings
    conns = [conn for conn in server.connections if not conn.closing]
    bp = server.backplane
    return {
        "instance": server.instance_id,
        "time": time.time(),
        "draining": bool(getattr(server, "draining", False)),
        "backplane": None if bp is None else {
            "url": bp.url, "up": bp.healthy, "reconnects": getattr(bp, "reconnects", 0)},
        "rooms": {room: hub.members(room) for room in sorted(hub.rooms())},
        "connections": [
            {"id": conn.id, "user": conn.user, "rooms": sorted(hub.rooms_of(conn))
             if conn in hub else [], "outbox": conn.pending}
            for conn in conns[:MAX_LISTED]],
        "connectionCount": len(conns),
        "outboxLimit": settings.outbox_limit,
        "counts": {
            "connections": c.connections, "joins": c.joins, "posts": c.posts,
            "directs": c.directs, "deliveries": c.deliveries, "rateLimited": c.rate_limited,
            "historyReads": c.history_reads, "apiPublishes": c.api_publishes,
            "recovered": c.recovered, "notRecovered": c.not_recovered,
        },
        "closes": {str(code): n for code, n in sorted(c.closes.items())},
        "recentCloses": [{"time": t, "user": user, "code": code, "reason": reason}
                         for t, user, code, reason in c.recent_closes],
    }
