"""Thin adapters: the only code that touches a web framework.

Each adapter maps its framework's WebSocket onto :class:`wskit.server.connection.Transport`
and hands it to :meth:`wskit.server.chat.ChatServer.serve_connection`. Both serve the
same routes:

=================  ==========================================================
``GET /ws``        the WebSocket endpoint (``?token=<JWT>``)
``GET /``          the browser chat page (``Settings.page``)
``GET /inspect``   the live inspector page (with the HTTP API: ``Settings.api_key``)
``GET /token``     ``?user=NAME`` issues a token; only with ``Settings.dev_tokens``
``GET /healthz``   ``{"instance": ..., "connections": N, "backplane": ..., "loop": ...}``
``GET /readyz``    200, or 503 while draining or the backplane is down
``GET /metrics``   Prometheus text format (``Settings.metrics``)
``/api/...``       the HTTP API (``Settings.api_key``): :mod:`wskit.adapters.api`
=================  ==========================================================

Before the upgrade a browser's ``Origin`` is checked (a foreign one gets HTTP
403); ``/healthz`` and ``/token`` answer only an allowed ``Host`` (HTTP 400
otherwise: DNS rebinding); the page carries a Content-Security-Policy. See
docs/security.md and :mod:`wskit.security.origins`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
from importlib import resources
from typing import Any

from ..exceptions import AuthError
from ..security.identity import normalise_user_id
from ..security.tokens import issue_token
from ..server.chat import ChatServer

WS_PATH = "/ws"


@functools.cache
def static_page(name: str) -> str:
    """A page of ``wskit/static/``: ``chat.html`` or ``inspect.html``."""
    return resources.files("wskit").joinpath(f"static/{name}").read_text("utf-8")


def chat_page() -> str:
    return static_page("chat.html")


def inspect_page() -> str:
    """The inspector (``GET /inspect``): it holds no data; it asks for the API key
    and reads ``GET /api/inspect`` with it, so only the key's holders see anything."""
    return static_page("inspect.html")


def _inline_hashes(tag: str, html: str) -> str:
    """CSP source expressions (``'sha256-...'``) for each inline ``<tag>`` block."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
        for b in blocks)


@functools.cache
def page_headers(name: str = "chat.html") -> dict[str, str]:
    """Headers of a page: only its own script and style run, no site may frame it
    (clickjacking), no content sniffing."""
    html = static_page(name)
    csp = (f"default-src 'none'; script-src {_inline_hashes('script', html)}; "
           f"style-src {_inline_hashes('style', html)}; connect-src 'self'; img-src 'self'; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


#: what a refused Host gets (status, body)
BAD_HOST: tuple[int, dict[str, Any]] = (
    400, {"error": "this Host is not served here (add it with --allowed-host)"})


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
    if not user:
        return 400, {"error": "give ?user=NAME"}
    try:
        user = normalise_user_id(user)  # the rules a token's sub must meet (identity.py)
    except AuthError as exc:
        return 400, {"error": str(exc)}
    return 200, {"user": user, "token": issue_token(user, server.secret, ttl=12 * 3600)}
