"""The HTTP side of a wskit server, framework-free: operations and the HTTP API.

Both adapters register the same routes and turn an :class:`Answer` into their
framework's response, so the two frameworks answer byte for byte alike:

=======================  =====================================================
``GET /healthz``          alive: 200 with the instance's summary (never 503)
``GET /readyz``           ready for traffic: 200, or 503 while the backplane is
                          down, the server is draining, or not started yet
``GET /metrics``          Prometheus text format (``Settings.metrics``; else 404)
``POST /api/publish``     ``{"roomId", "content", "userId"?}`` -> ``{"offset", "id", ...}``
``POST /api/disconnect``  ``{"userId", "code"?, "reason"?}`` -> ``{"closed": N}``
``GET /api/presence``     ``?roomId=R`` -> ``{"roomId", "users"}``
``GET /api/history``      ``?roomId=R&limit=K`` -> ``{"roomId", "messages", ...}``
``GET /api/openapi.json`` the OpenAPI 3.1 document of the routes above
=======================  =====================================================

The ``/api/`` routes need ``Settings.api_key``: without one they answer 404 (the API
is off), and with one every request must carry ``Authorization: Bearer KEY``
(compared in constant time, :func:`hmac.compare_digest`, so the comparison's
duration does not tell how much of a guess was right), else 401.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from ..server.chat import ChatServer
from ..server.metrics import CONTENT_TYPE

__all__ = ["Answer", "readiness", "metrics"]

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Answer:
    """An HTTP response, before a framework sends it."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, json.dumps(obj, separators=(",", ":")).encode(), JSON_TYPE, headers)


def error(status: int, code: str, message: str) -> Answer:
    return json_answer(status, {"error": {"code": code, "message": message}})


# -- operations ------------------------------------------------------------------


def ready(server: ChatServer) -> tuple[bool, str]:
    """Can this instance take traffic now, and if not, why."""
    if not server.started:
        return False, "not started"
    if server.draining:
        return False, "draining"
    bp = server.backplane
    if bp is not None and not bp.healthy:
        return False, "backplane down"
    return True, "ready"


def readiness(server: ChatServer) -> Answer:
    """``/readyz``: 200 or 503, the way orchestrators (Kubernetes' readiness probe,
    a load balancer's health check) expect: they route only to 200s."""
    ok, why = ready(server)
    return json_answer(200 if ok else 503, {"ready": ok, "reason": why,
                                            "instance": server.instance_id})


def metrics(server: ChatServer) -> Answer:
    if not server.settings.metrics:
        return error(404, "not_found", "metrics are off (Settings.metrics)")
    return Answer(200, server.metrics.render(), CONTENT_TYPE)


def _authorized(server: ChatServer, authorization: str | None) -> bool:
    key = server.settings.api_key
    if key is None or authorization is None:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                               key.encode())
