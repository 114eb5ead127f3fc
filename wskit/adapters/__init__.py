"""Thin adapters: the only code that touches a web framework.

Each adapter maps its framework's WebSocket onto :class:`wskit.server.connection.Transport`
and hands it to :meth:`wskit.server.chat.ChatServer.serve_connection`. Both serve the
same routes:

=================  ==========================================================
``GET /ws``        the WebSocket endpoint (``?token=<JWT>``)
``GET /``          the browser chat page (``Settings.page``)
``GET /token``     ``?user=NAME`` issues a token; only with ``Settings.dev_tokens``
``GET /healthz``   ``{"instance": ..., "connections": N, "backplane": ..., "loop": ...}``
``GET /readyz``    200, or 503 while draining or the backplane is down
``GET /metrics``   Prometheus text format (``Settings.metrics``)
``/api/...``       the HTTP API (``Settings.api_key``): :mod:`wskit.adapters.api`
=================  ==========================================================
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from ..security.tokens import issue_token
from ..server.chat import ChatServer

WS_PATH = "/ws"


def chat_page() -> str:
    return resources.files("wskit").joinpath("static/chat.html").read_text("utf-8")


def health(server: ChatServer) -> dict[str, Any]:
    bp = server.backplane
    return {
        "instance": server.instance_id,
        "connections": len(server.hub),
        "rooms": len(server.hub.rooms()),
        "backplane": None if bp is None else {"url": bp.url, "healthy": bp.healthy},
        # which event loop serves it: asyncio's, or uvloop's (--loop uvloop)
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def dev_token(server: ChatServer, user: str | None) -> tuple[int, dict[str, Any]]:
    """Status and body of ``GET /token?user=NAME`` (development only)."""
    if not server.settings.dev_tokens:
        return 404, {"error": "the development token endpoint is off (Settings.dev_tokens)"}
    if not user or len(user) > 64 or not user.isprintable():
        return 400, {"error": "give ?user=NAME, 1-64 printable characters"}
    return 200, {"user": user, "token": issue_token(user, server.secret, ttl=12 * 3600)}
