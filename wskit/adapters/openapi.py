"""The OpenAPI 3.1 document of wskit's HTTP API (wskit.adapters.api), served by both
adapters at ``GET /api/openapi.json`` and rendered by the FastAPI app at ``/api/docs``.

Written by hand rather than derived from FastAPI's routes, because the aiohttp app
must serve the same document and both apps route through one framework-free handler.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]

_ROOM = {"type": "string", "pattern": r"^[\w.:-]{1,64}$",
         "description": "1-64 letters, digits, '_', '.', ':' or '-'"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMMON = {
    "400": _error("bad input: the error names the field and the fault"),
    "401": _error("no 'Authorization: Bearer KEY' header, or a wrong key"),
    "404": _error("the API is off (the server has no --api-key)"),
    "503": _error("the backplane is down (a publish then reached this instance only)"),
}

_MESSAGE: dict[str, Any] = {
    "type": "object", "required": ["type", "roomId", "userId", "content", "timestamp", "id"],
    "properties": {"type": {"const": "message"}, "roomId": _ROOM, "userId": {"type": "string"},
                   "content": {"type": "string"}, "timestamp": {"type": "number"},
                   "id": {"type": "string"}, "offset": {"type": "integer"},
                   "epoch": {"type": "string"}},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "wskit HTTP API", "version": "1",
             "description": "Publish to rooms, disconnect users, read presence and history "
                            "across every instance (docs/api.md). Off unless the server has "
                            "an API key."},
    "components": {
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "the server's --api-key"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Message": _MESSAGE,
        },
    },
    "security": [{"apiKey": []}],
    "paths": {
        "/api/publish": {"post": {
            "summary": "Post to a room, as a client's post goes (offset, history, every "
                       "instance)",
            "operationId": "publish",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["roomId", "content"],
                "properties": {"roomId": _ROOM, "content": {
                    "anyOf": [{"type": "string"}, {"type": "object"}],
                    "description": "a string; an object too on a server run with "
                                   "--content-type json"},
                               "userId": {"type": "string", "default": "server",
                                          "description": "shown as the message's userId"}}}}}},
            "responses": {"200": _ok({"type": "object", "required": ["roomId", "offset"],
                                      "properties": {"roomId": _ROOM, "offset": {
                                          "type": ["integer", "null"],
                                          "description": "the post's offset; null with "
                                                         "history off"}}}),
                          **_COMMON},
        }},
        "/api/disconnect": {"post": {
            "summary": "Close every connection of a user, on every instance",
            "operationId": "disconnect",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["userId"],
                "properties": {"userId": {"type": "string"},
                               "code": {"type": "integer", "default": 1008,
                                        "description": "1000, 1001, 1008, 1012, 1013 or "
                                                       "3000-4999"},
                               "reason": {"type": "string", "maxLength": 120}}}}}},
            "responses": {"200": _ok({"type": "object", "properties": {
                "userId": {"type": "string"}, "closedHere": {"type": "integer"},
                "instances": {"type": "integer",
                              "description": "other instances that heard it"}}}),
                          **_COMMON},
        }},
        "/api/presence": {"get": {
            "summary": "Who is in a room, on any instance",
            "operationId": "presence",
            "parameters": [{"name": "roomId", "in": "query", "required": True, "schema": _ROOM}],
            "responses": {"200": _ok({"type": "object", "properties": {
                "roomId": _ROOM, "users": {"type": "array", "items": {"type": "string"}}}}),
                          **_COMMON},
        }},
        "/api/history": {"get": {
            "summary": "The last messages of a room, oldest first",
            "operationId": "history",
            "parameters": [
                {"name": "roomId", "in": "query", "required": True, "schema": _ROOM},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": _ok({"type": "object", "properties": {
                "roomId": _ROOM, "offset": {"type": "integer"}, "epoch": {"type": "string"},
                "messages": {"type": "array",
                             "items": {"$ref": "#/components/schemas/Message"}}}}),
                          "409": _error("history is off on this server"), **_COMMON},
        }},
        "/api/inspect": {"get": {
            "summary": "This instance now: rooms and members, connections with their outbox "
                       "fill, counters since start, recent closes (the inspector's data)",
            "operationId": "inspect",
            "responses": {"200": _ok({"type": "object", "required": [
                "instance", "time", "rooms", "connections", "counts", "closes",
                "recentCloses"], "properties": {
                "instance": {"type": "string"}, "time": {"type": "number"},
                "rooms": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "string"}}},
                "connections": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "user": {"type": "string"},
                    "rooms": {"type": "array", "items": {"type": "string"}},
                    "outbox": {"type": "integer"}}}},
                "connectionCount": {"type": "integer"}, "outboxLimit": {"type": "integer"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "closes": {"type": "object", "additionalProperties": {"type": "integer"}},
                "recentCloses": {"type": "array", "items": {"type": "object"}}}}),
                          **_COMMON},
        }},
    },
}
