"""The AsyncAPI 3.0 document of the WebSocket protocol: ``python -m wskit asyncapi``.

docs/protocol.md is the source of truth; this is the same protocol as a machine-
readable document (code generators, AsyncAPI Studio, contract tests). Each frame is a
message whose payload is a JSON Schema with ``additionalProperties: false``, so the
suite's check of the frames a server really sends (tests/server/test_asyncapi.py)
fails when the server sends a field the document does not know: a new field needs a
line here and in docs/protocol.md. Error codes and close codes are read from
:mod:`wskit.core.protocol`, so they cannot drift.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.protocol import ERROR_CODES, CloseCode

__all__ = ["document", "server_message_schemas", "client_message_schemas", "dumps"]

_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_NUM: dict[str, Any] = {"type": "number"}
_ROOM: dict[str, Any] = {"type": "string", "pattern": r"^[\w.:-]{1,64}$"}
_REF: dict[str, Any] = {"type": ["string", "integer"],
                        "description": "echoed from the request it answers"}
_EPOCH: dict[str, Any] = {"type": "string", "description": "the room history's lifetime"}
_PARTIAL: dict[str, Any] = {
    "type": "object", "required": ["code", "message"], "additionalProperties": False,
    "properties": {"code": _STR, "message": _STR},
    "description": "delivered (or joined) on this instance only: the backplane is down"}
#: a post's content: a string, or a JSON object on a server run with content_type "json"
_CONTENT: dict[str, Any] = {"anyOf": [_STR, {"type": "object"}],
                            "description": "a string; an object too with content_type json"}
_MESSAGE_PROPS: dict[str, Any] = {
    "type": {"const": "message"}, "roomId": _ROOM, "userId": _STR, "content": _CONTENT,
    "timestamp": _NUM, "id": _STR, "offset": _INT, "epoch": _EPOCH}


def _frame(kind: str, required: list[str], props: dict[str, Any], summary: str,
           *, ref: bool = False) -> dict[str, Any]:
    properties = {"type": {"const": kind}, **props}
    if ref:
        properties["ref"] = _REF
    return {"name": kind, "summary": summary, "contentType": "application/json",
            "payload": {"type": "object", "required": ["type", *required],
                        "additionalProperties": False, "properties": properties}}


#: a custom frame type, ``prefix.name`` (no built-in type has a dot)
_CUSTOM_TYPE: dict[str, Any] = {"type": "string",
                                "pattern": r"^(?!wskit\.)[a-z][a-z0-9_-]{0,31}\.[A-Za-z0-9_.:-]{1,64}$"}
#: an application's error code raised by its handler (namespaced like its types)
_CUSTOM_CODE: dict[str, Any] = {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,31}\."}


def _custom(summary: str) -> dict[str, Any]:
    return {"name": "custom", "summary": summary, "contentType": "application/json",
            "payload": {"type": "object", "required": ["type"], "additionalProperties": True,
                        "properties": {"type": _CUSTOM_TYPE, "ref": _REF}}}


def server_message_schemas() -> dict[str, dict[str, Any]]:
    """Every frame a server sends, by message id."""
    return {
        "welcome": _frame("welcome", ["userId", "connectionId", "instance", "heartbeat",
                                      "maxMessageSize"], {
            "userId": _STR, "connectionId": _STR, "instance": _STR,
            "heartbeat": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["interval", "timeout"],
                "additionalProperties": False,
                "properties": {"interval": _NUM, "timeout": _NUM}}]},
            "maxMessageSize": _INT,
            "expiresAt": {"oneOf": [{"type": "null"}, _NUM]}},
            "the first frame of every connection (expiresAt: the token's exp, Unix time)"),
        "refreshed": _frame("refreshed", [], {"expiresAt": {"oneOf": [{"type": "null"}, _NUM]}},
                            "a refresh's answer: the connection now lives on the new token",
                            ref=True),
        "joined": _frame("joined", ["roomId"], {
            "roomId": _ROOM, "offset": _INT, "epoch": _EPOCH, "recovered": {"type": "boolean"},
            "partial": _PARTIAL}, "a join's answer (with history: the room's offset and "
                                  "epoch; after since: recovered)", ref=True),
        "left": _frame("left", ["roomId"], {"roomId": _ROOM}, "a leave's answer", ref=True),
        "sent": _frame("sent", ["id", "timestamp"], {
            "id": _STR, "roomId": _ROOM, "to": _STR, "timestamp": _NUM, "offset": _INT,
            "partial": _PARTIAL}, "a post's or direct message's answer", ref=True),
        "roomMessage": {**_frame("message", ["roomId", "userId", "content", "timestamp", "id"],
                                 _MESSAGE_PROPS, "a post to a room this connection is in")},
        "directMessage": _frame("direct", ["from", "to", "content", "timestamp", "id"], {
            "from": _STR, "to": _STR, "content": _STR, "timestamp": _NUM, "id": _STR},
            "a direct message to this user (or from one of its other connections)"),
        "historyPage": _frame("history", ["roomId", "offset", "epoch", "messages"], {
            "roomId": _ROOM, "offset": _INT, "epoch": _EPOCH,
            "messages": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["type", "roomId", "userId", "content", "timestamp", "id"],
                "properties": _MESSAGE_PROPS}}}, "a history request's answer, oldest first",
            ref=True),
        "presenceList": _frame("presence", ["roomId", "users"], {
            "roomId": _ROOM, "users": {"type": "array", "items": _STR}},
            "a presence request's answer, sorted", ref=True),
        "presenceEvent": _frame("presence", ["event", "roomId", "userId"], {
            "event": {"enum": ["join", "leave"]}, "roomId": _ROOM, "userId": _STR},
            "with --presence-events: a user's first connection joined, or its last left"),
        "serverPing": _frame("ping", [], {}, "app-level heartbeat: answer with pong"),
        "pong": _frame("pong", [], {}, "a ping's answer", ref=True),
        "error": _frame("error", ["code", "message"], {
            "code": {"anyOf": [{"enum": sorted({*ERROR_CODES, "forbidden"})}, _CUSTOM_CODE]},
            "message": _STR}, "a refused frame; the connection lives on", ref=True),
        "ack": _frame("ack", [], {}, "a custom frame's reply when its handler sent none",
                      ref=True),
        "custom": _custom("a frame of the application's own (wskit.server.frames)"),
    }


def client_message_schemas() -> dict[str, dict[str, Any]]:
    """Every frame a client may send, by message id."""
    since = {"type": "object", "required": ["offset", "epoch"], "additionalProperties": False,
             "properties": {"offset": {"type": "integer", "minimum": 0}, "epoch": _EPOCH}}
    return {
        "join": _frame("join", ["roomId"], {"roomId": _ROOM, "since": since},
                       "enter a room (with since: and get what was missed)", ref=True),
        "leave": _frame("leave", ["roomId"], {"roomId": _ROOM}, "leave a room", ref=True),
        "post": _frame("message", ["roomId", "content"], {
            "roomId": _ROOM, "content": _CONTENT,
            "id": {"type": "string", "minLength": 1, "maxLength": 64,
                   "description": "the sender's id: a repeat is answered, not posted"}},
            "post to a joined room", ref=True),
        "direct": _frame("direct", ["to", "content"], {"to": _STR, "content": _STR},
                         "send to every connection of a user", ref=True),
        "historyRequest": _frame("history", ["roomId"], {
            "roomId": _ROOM, "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "after": {"type": "integer", "minimum": 0,
                      "description": "only messages above this offset (filling a gap)"}},
            "the last messages of a joined room, or those after an offset", ref=True),
        "presenceRequest": _frame("presence", ["roomId"], {"roomId": _ROOM},
                                  "who is in a joined room, on any instance", ref=True),
        "refresh": _frame("refresh", ["token"], {"token": _STR},
                          "a new token for the live connection (same user)", ref=True),
        "clientPing": _frame("ping", [], {}, "is the server there?", ref=True),
        "clientPong": _frame("pong", [], {}, "the answer to the server's ping", ref=True),
        "custom": _custom("a frame of a type the application registered "
                          "(@server.on('prefix.name', Schema)); its schema is the app's"),
    }


def document(url: str = "ws://localhost:8765/ws", frames: Any = None) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (``url``: the server it names). ``frames``: a
    server's :class:`~wskit.server.frames.FrameHandlers` (``server.frames``), whose
    registered types are then documented with their schemas as client messages."""
    host, _, path = url.partition("://")[2].partition("/")
    server_msgs, client_msgs = server_message_schemas(), client_message_schemas()
    if frames is not None:
        from .frames import json_schema

        for kind, entry in sorted(frames.handlers.items()):
            client_msgs[kind] = {"name": kind, "contentType": "application/json",
                                 "summary": f"the application's {kind!r} frame (action "
                                            f"{entry.action!r})",
                                 "payload": json_schema(kind, entry.schema)}
    messages = {**{f"server.{k}": v for k, v in server_msgs.items()},
                **{f"client.{k}": v for k, v in client_msgs.items()}}

    def refs(prefix: str, names: dict[str, Any]) -> dict[str, Any]:
        return {f"{prefix}.{k}": {"$ref": f"#/components/messages/{prefix}.{k}"} for k in names}

    closes = "; ".join(f"{int(c)} {c.name.lower()}" for c in CloseCode)
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "wskit WebSocket protocol", "version": "1",
                 "description": "Room-based chat over JSON text frames (docs/protocol.md). "
                                "Every client frame may carry a ref; the one reply to it "
                                f"carries the same ref. Close codes: {closes}."},
        "defaultContentType": "application/json",
        "servers": {"wskit": {"host": host, "protocol": url.partition("://")[0] or "ws",
                              "pathname": "/" + path,
                              "description": "connect with ?token=<JWT> (HS256, exp)"}},
        "channels": {"chat": {
            "address": "/" + path, "title": "one WebSocket connection",
            "messages": {**refs("server", server_msgs), **refs("client", client_msgs)}}},
        # the document describes the wskit server: it sends the server frames and
        # receives the client frames
        "operations": {
            "sendFrames": {
                "action": "send", "channel": {"$ref": "#/channels/chat"},
                "summary": "frames the server sends to a client",
                "messages": [{"$ref": f"#/channels/chat/messages/server.{k}"}
                             for k in server_msgs]},
            "receiveFrames": {
                "action": "receive", "channel": {"$ref": "#/channels/chat"},
                "summary": "frames a client sends to the server",
                "messages": [{"$ref": f"#/channels/chat/messages/client.{k}"}
                             for k in client_msgs]},
        },
        "components": {"messages": messages},
    }


def dumps(url: str = "ws://localhost:8765/ws") -> str:
    return json.dumps(document(url), indent=2, ensure_ascii=False) + "\n"
