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
``GET /api/inspect``      this instance now (:mod:`wskit.server.snapshot`): the inspector's data
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core import protocol
from ..core.protocol import ROOM_PATTERN
from ..exceptions import BackplaneUnavailable
from ..server.api import MAX_USER_LEN
from ..server.chat import ChatServer
from ..server.metrics import CONTENT_TYPE
from ..server.snapshot import snapshot
from .openapi import OPENAPI

__all__ = ["Answer", "readiness", "metrics", "handle_api", "API_PREFIX"]

API_PREFIX = "/api/"
#: largest request body the API reads: a post's content plus its JSON around it
_BODY_SLACK = 4096

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


# -- the HTTP API ----------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _string(obj: Mapping[str, Any], name: str, *, required: bool = True,
            default: str | None = None) -> str:
    if name not in obj or obj[name] is None:
        if required:
            raise _BadRequest("missing_field", f"the field {name!r} is required")
        assert default is not None
        return default
    value = obj[name]
    if not isinstance(value, str):
        raise _BadRequest("wrong_type", f"the field {name!r} must be a string")
    return value


def _body(raw: bytes, limit: int) -> dict[str, Any]:
    if len(raw) > limit:
        raise _BadRequest("too_large", f"the body is over {limit} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadRequest("invalid_json", "the body must be a JSON object") from None
    if not isinstance(obj, dict):
        raise _BadRequest("not_an_object", "the body must be a JSON object")
    return obj


def _limit(query: Mapping[str, str]) -> int | None:
    text = query.get("limit")
    if text is None or text == "":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise _BadRequest("invalid_value", "'limit' must be an integer from 1 to 1000")
    return int(text)


async def handle_api(server: ChatServer, method: str, path: str, authorization: str | None,
                     query: Mapping[str, str], body: bytes) -> Answer:
    """Answer one ``/api/...`` request (both adapters call this; see the module table)."""
    if server.settings.api_key is None:
        return error(404, "not_found", "the HTTP API is off: start the server with --api-key")
    route = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else ""
    if route == "openapi.json" and method == "GET":  # documentation: no key needed
        return json_answer(200, OPENAPI)
    if not _authorized(server, authorization):
        # RFC 6750 section 3: a bearer-token challenge with the 401
        return Answer(401, json.dumps({"error": {
            "code": "unauthorized", "message": "send 'Authorization: Bearer <API key>'"}},
            separators=(",", ":")).encode(), JSON_TYPE,
            (("WWW-Authenticate", 'Bearer realm="wskit"'),))
    allowed = _METHODS.get(route)
    if allowed is None:
        return error(404, "not_found", f"no API route {path!r}")
    if method != allowed:
        return Answer(405, json.dumps({"error": {
            "code": "method_not_allowed", "message": f"use {allowed} for {path}"}},
            separators=(",", ":")).encode(), JSON_TYPE, (("Allow", allowed),))
    try:
        return await _ROUTES[route](server, query, body)
    except _BadRequest as exc:
        return error(400, exc.code, str(exc))
    except ValueError as exc:  # what the server API refuses (the same words)
        return error(400, "invalid_value", str(exc))
    except BackplaneUnavailable as exc:
        return error(503, "backplane_unavailable", f"the cross-instance bus is down ({exc})")


async def _publish(server: ChatServer, query: Mapping[str, str], raw: bytes) -> Answer:
    obj = _body(raw, server.settings.max_message_size + _BODY_SLACK)
    room = _string(obj, "roomId")
    content: protocol.Content = (
        obj["content"] if server.settings.content_type == "json"
        and isinstance(obj.get("content"), dict) else _string(obj, "content"))
    user = _string(obj, "userId", required=False, default="server")
    offset = await server.publish(room, content, user=user)
    return json_answer(200, {"roomId": room, "offset": offset})


async def _disconnect(server: ChatServer, query: Mapping[str, str], raw: bytes) -> Answer:
    obj = _body(raw, _BODY_SLACK)
    user = _string(obj, "userId")
    if not 0 < len(user) <= MAX_USER_LEN:
        raise _BadRequest("invalid_value", f"'userId' must be 1-{MAX_USER_LEN} characters")
    code = obj.get("code", 1008)
    reason = _string(obj, "reason", required=False, default="disconnected by the server")
    done = await server.disconnect(user, code, reason)
    return json_answer(200, {"userId": user, "closedHere": done.here,
                             "instances": done.instances})


def _room(query: Mapping[str, str]) -> str:
    room = query.get("roomId")
    if not room:
        raise _BadRequest("missing_field", "the query parameter 'roomId' is required")
    if not ROOM_PATTERN.fullmatch(room):
        raise _BadRequest("invalid_value",
                          "'roomId' must be 1-64 letters, digits, '_', '.', ':' or '-'")
    return room


async def _presence(server: ChatServer, query: Mapping[str, str], raw: bytes) -> Answer:
    room = _room(query)
    return json_answer(200, {"roomId": room, "users": await server.api.presence(room)})


async def _history(server: ChatServer, query: Mapping[str, str], raw: bytes) -> Answer:
    room, limit = _room(query), _limit(query)
    if server.log is None:
        return error(409, "history_unavailable", "history is off on this server (history_size 0)")
    return json_answer(200, await server.history(room, limit))


async def _inspect(server: ChatServer, query: Mapping[str, str], raw: bytes) -> Answer:
    return json_answer(200, snapshot(server))


_METHODS = {"publish": "POST", "disconnect": "POST", "presence": "GET", "history": "GET",
            "inspect": "GET"}
_ROUTES = {"publish": _publish, "disconnect": _disconnect, "presence": _presence,
           "history": _history, "inspect": _inspect}
