"""The wskit wire protocol: one JSON object per WebSocket text frame.

This module does no I/O. It turns one received text frame into a typed request
(or a :class:`~wskit.exceptions.ProtocolError` naming the fault) and turns server
events into the text of the frames to send. Both adapters (aiohttp, FastAPI) and
the client use it, which is what makes them speak exactly the same protocol.
``docs/protocol.md`` is the prose version of this file.

Why JSON text frames only: RFC 6455 section 5.6 distinguishes text frames (UTF-8,
validated by the framework) from binary frames. A chat protocol has no use for
binary data, so a binary frame is refused with close code 1003 (unsupported data,
RFC 6455 section 7.4.1) rather than guessed at.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..exceptions import ProtocolError
from .codes import ERROR_CODES, CloseCode
from .framing import close_reason, text_frame  # noqa: F401  (re-exported: wire format, one import)
from .text import first_invisible

__all__ = [
    "CloseCode", "ERROR_CODES", "Join", "Leave", "Post", "Direct", "History", "PresenceQuery",
    "Since", "Ping", "Pong", "Refresh", "Request", "Ref", "parse", "encode", "join_request",
    "leave_request", "post_request", "direct_request", "history_request", "presence_request",
    "ping_request", "pong_request", "refresh_request", "error_frame", "ROOM_PATTERN",
]


#: Room ids: 1-64 word characters, dots, colons or dashes. They become part of
#: Redis channel names, so no spaces or wildcards (``*?[]``, see PSUBSCRIBE).
ROOM_PATTERN = re.compile(r"[\w.:-]{1,64}")
_MAX_USER_LEN = 128
_MAX_REF_LEN = 64
#: integer refs must survive a round trip through a JavaScript number
_MAX_SAFE_INT = 2**53 - 1


Ref = str | int | None


@dataclass(frozen=True, slots=True)
class Since:
    """Where a rejoining client left off: the last offset it saw, and its epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    ref: str | int | None = None
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class History:
    room: str
    limit: int | None = None
    ref: str | int | None = None
    #: only messages with an offset above this one (a client repairing a gap)
    after: int | None = None


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """``{"type": "presence", "roomId": R}``: who is in R, on any instance."""

    room: str
    ref: str | int | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str
    ref: str | int | None = None


#: a post's content: text, or a JSON object where the server allows it
#: (``Settings.content_type = "json"``)
Content = str | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Post:
    room: str
    content: Content
    ref: str | int | None = None
    #: the sender's id for this post: a repeat of it is answered, not posted again
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Direct:
    to: str
    content: str
    ref: str | int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    ref: str | int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    ref: str | int | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """``{"type": "refresh", "token": T}``: a new token for the live connection."""

    token: str
    ref: str | int | None = None


Request = Join | Leave | Post | Direct | Ping | Pong | History | PresenceQuery | Refresh

_JSON_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
                    list: "an array", dict: "an object", type(None): "null"}


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _field(obj: dict, name: str, kind: str) -> Any:
    """Fetch a required string field, with a precise complaint if it is wrong."""
    if name not in obj:
        raise ProtocolError("missing_field", f"the frame type {kind!r} needs the field {name!r}")
    value = obj[name]
    if not isinstance(value, str):
        raise ProtocolError(
            "wrong_type", f"field {name!r} must be a string, got {_type_name(value)}"
        )
    _check_encodable(value, name)
    return value


def _check_encodable(value: str, name: str) -> None:
    """Refuse lone surrogates (``"\\ud800"``): valid JSON, but not Unicode text.

    They would be echoed to every receiver and fail there, in UTF-8 encoding of
    the outgoing frame, far from the frame that brought them.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "invalid_value", f"field {name!r} contains a lone UTF-16 surrogate escape"
        ) from None


#: how deep a JSON object as content may nest: the server re-encodes it for every
#: frame it sends, deeper in the stack than json.loads parsed it
MAX_CONTENT_DEPTH = 32


def _object(value: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON object as content: at most MAX_CONTENT_DEPTH deep, and every string in
    it, keys included, encodable (a lone surrogate anywhere would fail at every
    receiver). Iterative, so a walk never recurses."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)) and depth > MAX_CONTENT_DEPTH:
            raise ProtocolError("invalid_value", f"field {name!r} nests deeper than "
                                f"{MAX_CONTENT_DEPTH} levels")
        if isinstance(item, dict):
            for key in item:
                _check_encodable(key, name)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            _check_encodable(item, name)
    return value


def _room(obj: dict, kind: str) -> str:
    # NFKC first (UAX #15): compatibility forms such as U+217C and U+2113 ("ⅼobby",
    # "ℓobby") become "lobby", so one room has one id. Cross-script look-alikes (a
    # Cyrillic "а") are distinct letters and stay distinct: the application's to police.
    room = unicodedata.normalize("NFKC", _field(obj, "roomId", kind))
    if not ROOM_PATTERN.fullmatch(room) or first_invisible(room) is not None:
        raise ProtocolError(
            "invalid_value",
            "field 'roomId' must be 1-64 letters, digits, '_', '.', ':' or '-', "
            f"got {room[:80]!r}",
        )
    return room


def _ref(obj: dict) -> str | int | None:
    ref = obj.get("ref")
    if ref is None:
        return None
    # bool is an int subclass; a ref of true is almost certainly a client bug.
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise ProtocolError(
            "wrong_type", f"field 'ref' must be a string or an integer, got {_type_name(ref)}"
        )
    if isinstance(ref, str):
        if len(ref) > _MAX_REF_LEN:
            raise ProtocolError("invalid_value",
                                f"field 'ref' is longer than {_MAX_REF_LEN} characters")
        _check_encodable(ref, "ref")
    elif not -_MAX_SAFE_INT <= ref <= _MAX_SAFE_INT:
        raise ProtocolError("invalid_value", "an integer 'ref' must be within +-(2**53 - 1)")
    return ref


#: a post's id (chosen by its sender) is at most this long
MAX_ID_LEN = 64


def _post_id(obj: dict) -> str | None:
    """A post's ``id``: 1 to 64 printable characters (it is stored, and shown to
    every receiver, so no control characters)."""
    post_id = obj.get("id")
    if post_id is None:
        return None
    if not isinstance(post_id, str):
        raise ProtocolError("wrong_type",
                            f"field 'id' must be a string, got {_type_name(post_id)}")
    if not 1 <= len(post_id) <= MAX_ID_LEN or not post_id.isprintable():
        raise ProtocolError("invalid_value", f"field 'id' must be 1 to {MAX_ID_LEN} "
                            "printable characters")
    _check_encodable(post_id, "id")
    return post_id


#: most messages one history request returns
MAX_LIMIT = 1000
_MAX_LIMIT = MAX_LIMIT


def _since(obj: dict) -> Since | None:
    since = obj.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise ProtocolError("wrong_type", f"field 'since' must be an object, got {_type_name(since)}")
    offset, epoch = since.get("offset"), since.get("epoch")
    if type(offset) is not int or offset < 0 or offset > _MAX_SAFE_INT:
        raise ProtocolError("invalid_value",
                            "field 'since.offset' must be an integer offset, 0 or more")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= 64:
        raise ProtocolError("invalid_value", "field 'since.epoch' must be a string of 1-64 "
                            "characters (the epoch of the room's 'joined' frame)")
    _check_encodable(epoch, "since.epoch")
    return Since(offset, epoch)


def _after(obj: dict) -> int | None:
    after = obj.get("after")
    if after is None:
        return None
    if type(after) is not int or not 0 <= after <= _MAX_SAFE_INT:
        raise ProtocolError("invalid_value", "field 'after' must be an integer offset, 0 or more")
    return after


def _limit(obj: dict) -> int | None:
    limit = obj.get("limit")
    if limit is None:
        return None
    if type(limit) is not int or not 0 < limit <= _MAX_LIMIT:
        raise ProtocolError("invalid_value", f"field 'limit' must be an integer from 1 to {_MAX_LIMIT}")
    return limit


def parse(text: str, *, objects: bool = False) -> Request:
    """Parse one client text frame into a request, or raise :class:`ProtocolError`.

    The error's ``code`` is one of :data:`ERROR_CODES`; its message names the
    field and what was wrong with it, so the error frame can be shown to a user.
    ``objects``: a post's content may be a JSON object as well as a string.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        # JSONDecodeError; UnicodeDecodeError for bad bytes; ValueError for an
        # integer of more than sys.get_int_max_str_digits() digits (3.11+)
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        # json's C scanner recurses once per nesting level: a few KB of "[[[[..."
        # exhausts the interpreter's recursion limit. Bad input, not a server bug.
        raise ProtocolError("invalid_json", "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not_an_object", f"frame must be a JSON object, got {_type_name(obj)}")
    kind = obj.get("type")
    if kind is None:
        raise ProtocolError("missing_field", "every frame needs a 'type' field")
    if not isinstance(kind, str):
        raise ProtocolError("wrong_type", f"field 'type' must be a string, got {_type_name(kind)}")
    ref = _ref(obj)
    try:
        return _request(obj, kind, ref, objects)
    except ProtocolError as exc:
        exc.ref = ref  # the error frame answers the request it refuses
        raise


def _request(obj: dict, kind: str, ref: Ref, objects: bool = False) -> Request:
    if kind == "message":
        if objects and isinstance(obj.get("content"), dict):
            return Post(_room(obj, kind), _object(obj["content"], "content"), ref,
                        _post_id(obj))
        return Post(_room(obj, kind), _field(obj, "content", kind), ref, _post_id(obj))
    if kind == "join":
        return Join(_room(obj, kind), ref, _since(obj))
    if kind == "history":
        return History(_room(obj, kind), _limit(obj), ref, _after(obj))
    if kind == "leave":
        return Leave(_room(obj, kind), ref)
    if kind == "presence":
        return PresenceQuery(_room(obj, kind), ref)
    if kind == "direct":
        to = _field(obj, "to", kind)
        if not 0 < len(to) <= _MAX_USER_LEN:
            raise ProtocolError("invalid_value", f"field 'to' must be 1-{_MAX_USER_LEN} characters")
        return Direct(to, _field(obj, "content", kind), ref)
    if kind == "refresh":
        token = _field(obj, "token", kind)
        if not token:
            raise ProtocolError("invalid_value", "field 'token' must be a non-empty JWT")
        return Refresh(token, ref)
    if kind == "pong":
        return Pong(ref)
    if kind == "ping":
        return Ping(ref)
    raise ProtocolError(
        "unknown_type",
        f"unknown frame type {kind[:40]!r}; expected one of "
        "'join', 'leave', 'message', 'direct', 'history', 'presence', 'refresh', 'ping', "
        "'pong'",
    )


# -- requests: what a client sends ----------------------------------------------
#
# The inverse of parse(): parse(encode(join_request("r"))) == Join("r"). The client,
# the benchmarks' clients and the fuzzer build their frames here, so the wire
# format of a request has one owner (tests/core/test_protocol.py ties the two).


def _with_ref(frame: dict[str, Any], ref: Ref) -> dict[str, Any]:
    if ref is not None:
        frame["ref"] = ref
    return frame


def join_request(room: str, *, since: Since | None = None, ref: Ref = None) -> dict[str, Any]:
    """``join``; with ``since``, the server replays what came after that position."""
    frame: dict[str, Any] = {"type": "join", "roomId": room}
    if since is not None:
        frame["since"] = {"offset": since.offset, "epoch": since.epoch}
    return _with_ref(frame, ref)


def leave_request(room: str, *, ref: Ref = None) -> dict[str, Any]:
    return _with_ref({"type": "leave", "roomId": room}, ref)


def post_request(room: str, content: Content, *, ref: Ref = None,
                 id: str | None = None) -> dict[str, Any]:
    """A room message (``"type": "message"`` on the wire, :class:`Post` once parsed);
    ``id`` makes a repeat of it harmless (docs/protocol.md, "Post ids")."""
    frame: dict[str, Any] = {"type": "message", "roomId": room, "content": content}
    if id is not None:
        frame["id"] = id
    return _with_ref(frame, ref)


def direct_request(to: str, content: str, *, ref: Ref = None) -> dict[str, Any]:
    return _with_ref({"type": "direct", "to": to, "content": content}, ref)


def history_request(room: str, *, limit: int | None = None, after: int | None = None,
                    ref: Ref = None) -> dict[str, Any]:
    """The last ``limit`` messages of a room, or (``after``) the first ``limit`` ones
    with an offset above ``after``: what a client fetches to fill a gap."""
    frame: dict[str, Any] = {"type": "history", "roomId": room}
    if after is not None:
        frame["after"] = after
    if limit is not None:
        frame["limit"] = limit
    return _with_ref(frame, ref)


def presence_request(room: str, *, ref: Ref = None) -> dict[str, Any]:
    return _with_ref({"type": "presence", "roomId": room}, ref)


def ping_request(ref: Ref = None) -> dict[str, Any]:
    """A client's ``ping``: the server answers ``pong`` (with the same ``ref``)."""
    return _with_ref({"type": "ping"}, ref)


def pong_request(ref: Ref = None) -> dict[str, Any]:
    """The answer to the server's app-level ``ping`` (no reply comes back)."""
    return _with_ref({"type": "pong"}, ref)


def refresh_request(token: str, *, ref: Ref = None) -> dict[str, Any]:
    """A new token for the live connection, before the current one's ``exp``."""
    return _with_ref({"type": "refresh", "token": token}, ref)


# -- server frames ---------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """The text of one server frame: compact JSON, UTF-8 kept as is."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def error_frame(code: str, message: str, ref: str | int | None = None) -> str:
    """The text of an ``error`` frame."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


def reply(kind: str, ref: str | int | None = None, **fields: Any) -> str:
    """The text of an acknowledgement (``joined``, ``left``, ``sent``, ``pong``...)."""
    frame: dict[str, Any] = {"type": kind, **fields}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


PING = encode({"type": "ping"})
