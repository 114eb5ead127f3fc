"""Your own frame types: ``@server.on("app.typing", Typing)``.

A handler runs for a client frame of its type, after the same gate as every built-in
frame: the framework's size limit (``max_message_size``, else 1009), the connection's
rate limit (``rate_limited`` errors, then 4029) and, when the server has one, the
authorization hook (``FrameHandlers.authorize``, asked with the handler's *action*
name). Its payload is checked against the schema given (a dataclass or a pydantic
model), and a frame refused by it gets the same error frames as a built-in type
(``missing_field``, ``wrong_type``, ``invalid_value``, with the frame's ``ref``); the
connection lives on.

Custom types are namespaced, ``prefix.name`` (``app.typing``, ``game.move``): no
built-in type has a dot, so none can ever collide with them, and ``wskit.`` is
reserved. Every frame with a ``ref`` still gets exactly one reply: the handler's
``ctx.reply(...)``, else ``{"type": "ack", "ref": R}`` when the handler returns, else
an error frame when it raises :class:`~wskit.exceptions.ProtocolError`. Any other
exception is a bug in the handler and closes the connection with 1011, as a bug in a
built-in handler would.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Union

from ..core import protocol
from ..exceptions import BackplaneUnavailable, ConfigError, ProtocolError
from .connection import Connection, Outgoing

if TYPE_CHECKING:
    from .chat import ChatServer

__all__ = ["FrameContext", "FrameHandlers", "Handler", "TYPE_PATTERN"]

#: a custom frame type: ``prefix.name``; built-in types have no dot
TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}\.[A-Za-z0-9_.:-]{1,64}")

Handler = Callable[["FrameContext", Any], Awaitable[None]]


def check_type(kind: Any) -> str:
    if not isinstance(kind, str) or not TYPE_PATTERN.fullmatch(kind) or kind.startswith(
            "wskit."):
        raise ConfigError(f"a custom frame type is 'prefix.name' (e.g. 'app.typing'), not "
                          f"{kind!r}; 'wskit.' is reserved")
    return kind


class FrameContext:
    """What a handler may do: answer, publish to a room, send to a user."""

    __slots__ = ("_server", "conn", "type", "ref", "replied")

    def __init__(self, server: ChatServer, conn: Connection, kind: str,
                 ref: protocol.Ref) -> None:
        self._server, self.conn, self.type, self.ref = server, conn, kind, ref
        self.replied = False

    @property
    def user(self) -> str:
        return self.conn.user

    def reply(self, frame: dict[str, Any] | None = None) -> None:
        """The one reply to this frame (with its ``ref``); ``None``: ``ack``."""
        if self.replied:
            raise RuntimeError("a frame gets exactly one reply")
        self.replied = True
        out: dict[str, Any] = {"type": "ack"} if frame is None else outgoing(frame)
        if self.ref is not None:
            out["ref"] = self.ref
        self.conn.deliver(protocol.encode(out))

    async def publish(self, room: str, frame: dict[str, Any]) -> None:
        """``frame`` to the other members of ``room``, on every instance (ephemeral: no
        offset, no history, like presence events). The sender must have joined it."""
        s = self._server
        if not s.hub.is_member(self.conn, room):
            raise ProtocolError("not_joined", f"join room {room!r} to publish to it")
        self._publish(room, frame)

    def _publish(self, room: str, frame: dict[str, Any]) -> None:
        s = self._server
        text = protocol.encode(outgoing(frame))
        targets = s.hub.room_targets(room, exclude=self.conn)
        s.delivery.fan_out(room, targets, Outgoing(text), None)
        if s.relay is not None:
            s.relay.post_room(room, text, self.conn.id, None, _ignore)

    async def send_to(self, user: str, frame: dict[str, Any]) -> None:
        """``frame`` to every connection of ``user`` (not this one), on every instance."""
        s = self._server
        text = protocol.encode(outgoing(frame))
        out = Outgoing(text)
        targets = [t for t in s.hub.user_targets(user) if t is not self.conn]
        s.stats.deliveries += len(targets)
        for target in targets:
            target.deliver(out)
        if s.relay is not None:
            try:
                await s.relay.publish_user(user, text)
            except BackplaneUnavailable as exc:
                raise ProtocolError("backplane_unavailable", str(exc)) from None


def outgoing(frame: dict[str, Any]) -> dict[str, Any]:
    """A copy of an application's frame, its type checked (``prefix.name``)."""
    if not isinstance(frame, dict):
        raise TypeError("a frame is a dict")
    check_type(frame.get("type"))
    return dict(frame)


def _ignore(result: object) -> None:
    """Ephemeral frames are best effort, like presence events."""


class _Entry(typing.NamedTuple):
    handler: Handler
    schema: Any
    action: str


class FrameHandlers:
    """One server's custom frame types."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        self.handlers: dict[str, _Entry] = {}

    def on(self, kind: str, schema: Any = None, *,
           action: str | None = None) -> Callable[[Handler], Handler]:
        """Register ``async def handler(ctx, frame)`` for frames of type ``kind``.

        ``schema``: a dataclass or a pydantic model the payload is checked against
        (``frame`` is then an instance of it), or None (``frame`` is the dict).
        ``action``: the authorization action name (default: the type).
        """
        check_type(kind)
        if schema is not None and not (dataclasses.is_dataclass(schema)
                                       or hasattr(schema, "model_validate")):
            raise ConfigError("schema must be a dataclass or a pydantic model")

        def register(handler: Handler) -> Handler:
            self.handlers[kind] = _Entry(handler, schema, action or kind)
            return handler

        return register

    async def dispatch(self, conn: Connection, text: str, ref: protocol.Ref) -> bool:
        """Handle ``text`` if its type is registered (then True): exactly one reply."""
        obj = json.loads(text)  # it parsed once already: an object with a string type
        entry = self.handlers.get(obj["type"])
        if entry is None:
            return False
        ctx = FrameContext(self._server, conn, obj["type"], ref)
        room = obj.get("roomId") if isinstance(obj.get("roomId"), str) else None
        try:
            # the server's one policy (docs/authorization.md), asked with the handler's
            # action and the frame's room ("" when it names none): under "claims" an
            # action it does not know is refused, so an app maps its frame to one
            # (action="post": whoever may post to the room) or brings its own policy
            if not await self._server.authority.allows(conn, entry.action, room or ""):
                raise ProtocolError("forbidden", f"not allowed to {entry.action} here")
            payload = {k: v for k, v in obj.items() if k not in ("type", "ref")}
            frame = payload if entry.schema is None else validate(entry.schema, payload,
                                                                 obj["type"])
            await entry.handler(ctx, frame)
        except ProtocolError as exc:
            if not ctx.replied:
                ctx.replied = True
                conn.deliver(protocol.error_frame(exc.code, exc.message, ref))
            return True
        if not ctx.replied and ref is not None:
            ctx.reply()
        return True


def json_schema(kind: str, schema: Any) -> dict[str, Any]:
    """The JSON Schema of a custom frame of type ``kind`` (for the AsyncAPI document)."""
    ref: dict[str, Any] = {"type": ["string", "integer"]}
    if schema is None:
        return {"type": "object", "required": ["type"], "additionalProperties": True,
                "properties": {"type": {"const": kind}, "ref": ref}}
    if hasattr(schema, "model_json_schema"):
        body = schema.model_json_schema()
        body.setdefault("properties", {})
    else:
        hints = typing.get_type_hints(schema)
        fields = [f for f in dataclasses.fields(schema) if f.init]
        body = {"type": "object", "additionalProperties": False,
                "properties": {f.name: _hint_schema(hints.get(f.name, Any)) for f in fields},
                "required": [f.name for f in fields if f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING]}
    body["properties"] = {"type": {"const": kind}, "ref": ref, **body["properties"]}
    body["required"] = ["type", *body.get("required", [])]
    return body


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "array", dict: "object", type(None): "null"}


def _hint_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [_hint_schema(h) for h in typing.get_args(hint)]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    name = _JSON_TYPES.get(origin or hint)
    return {} if name is None else {"type": name}


def validate(schema: Any, payload: dict[str, Any], kind: str) -> Any:
    """An instance of ``schema`` from ``payload``, or ProtocolError as for built-ins."""
    if hasattr(schema, "model_validate"):
        return _pydantic(schema, payload)
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for name in payload:
        if name not in fields:
            raise ProtocolError("invalid_value", f"the frame type {kind!r} has no field {name!r}")
    for name, f in fields.items():
        if name not in payload:
            if (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING):
                raise ProtocolError("missing_field", f"the frame type {kind!r} needs the field {name!r}")
            continue
        if not _is(payload[name], hints.get(name, Any)):
            raise ProtocolError("wrong_type", f"field {name!r} must be {_describe(hints[name])}")
    try:
        return schema(**payload)
    except (TypeError, ValueError) as exc:  # the dataclass's own __post_init__ checks
        raise ProtocolError("invalid_value", str(exc)[:200]) from None


def _is(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return any(_is(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    base = origin or hint
    if base is float:
        return type(value) in (int, float)
    if base is int:
        return type(value) is int
    if base in (list, dict, str, bool):
        return type(value) is base
    return isinstance(value, base)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _pydantic(schema: Any, payload: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        # strict: a string is not an integer, as for built-in frames
        return schema.model_validate(payload, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "frame"
        kind = err.get("type", "")
        code = ("missing_field" if kind == "missing"
                else "wrong_type" if kind.endswith(("_type", "_parsing")) else "invalid_value")
        raise ProtocolError(code, f"field {field!r}: {err.get('msg', 'invalid')}") from None
