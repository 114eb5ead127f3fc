"""The backplane envelope: the one owner of its wire format (docs/protocol.md).

Every instance wraps the server frame it publishes in one JSON object::

    {"origin":"<instance id>","sig":"<32 hex>","frame":{...the server frame...}}
    {"origin":"<instance id>/<connection id>","sig":"...","offset":17,"epoch":"9f2c01ab","frame":{...}}

``sig`` (optional in the format, written by every wskit writer) is the writer's
signature of the frame on its channel (:mod:`wskit.security.signing`).

Four writers and readers used to spell this out each for itself (the backplane
base, the Redis append script, the relay's regular expression, the history
splices); a change to one would have left the others behind. Here is each way of
writing and reading it, and :data:`LUA_HEAD` / :data:`LUA_TAIL` are the same text
as Lua expressions, spliced into the Redis scripts, so the Lua cannot drift from
the Python (tests/core/test_envelope.py runs both and compares).

Plain code, no I/O: it sits in :mod:`wskit.core`, which never imports asyncio or redis.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

__all__ = ["encode", "decode", "peek", "is_frame", "Peeked", "with_offset", "with_raw", "LUA_HEAD",
           "LUA_TAIL", "LUA_END"]

# The envelope's text around its parts, in the order written. A frame goes last, so
# that it can be spliced in as the text it already is (no second encode).
_ORIGIN = '{"origin":'
_SIG = ',"sig":'
_OFFSET = ',"offset":'
_EPOCH = ',"epoch":'
_FRAME = ',"frame":'
_END = "}"


def encode(origin: str, frame_text: str, offset: int | None = None,
           epoch: str | None = None, sig: str = "") -> str:
    """Wrap an already-encoded frame; string concatenation avoids encoding it twice.
    ``sig`` (hex, see :mod:`wskit.security.signing`): '' writes none."""
    head = _ORIGIN + json.dumps(origin)
    if sig:
        head += _SIG + '"' + sig + '"'
    if offset is not None:
        head += _OFFSET + str(offset) + _EPOCH + json.dumps(epoch)
    return head + _FRAME + frame_text + _END


def decode(data: str | bytes) -> tuple[str, dict[str, Any]]:
    """``(origin, frame)`` from any envelope, or ValueError naming what is wrong.

    For envelopes of unknown writers (anything may PUBLISH on a channel): the whole
    object is parsed and checked before any client sees it. An envelope's ``offset``
    and ``epoch`` are put into the frame, which is how clients see them.
    """
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("envelope must be a JSON object")
    origin, frame = obj.get("origin"), obj.get("frame")
    if not isinstance(origin, str):
        raise ValueError("envelope needs a string 'origin'")
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("envelope needs a 'frame' object with a string 'type'")
    offset = obj.get("offset")
    if offset is not None:
        if type(offset) is not int:
            raise ValueError("envelope 'offset' must be an integer")
        frame["offset"] = offset
        epoch = obj.get("epoch")
        if not isinstance(epoch, str):
            raise ValueError("envelope with an 'offset' needs a string 'epoch'")
        frame["epoch"] = epoch
    return origin, frame


class Peeked(NamedTuple):
    """An envelope read by :func:`peek`: its parts, the frame still as text."""

    origin: str
    offset: int | None
    epoch: str | None
    #: the frame exactly as published (without offset and epoch)
    frame_text: str
    #: the writer's signature, None when it wrote none
    sig: str | None = None


#: the head exactly as :func:`encode` and :data:`LUA_HEAD` write it around a compact
#: frame (an origin with no escapes, a hex epoch)
_HEAD = re.compile(re.escape(_ORIGIN) + r'"([^"\\]*)"(?:' + re.escape(_SIG)
                   + r'"([0-9a-f]{1,64})")?(?:' + re.escape(_OFFSET) + r"(\d+)"
                   + re.escape(_EPOCH) + r'"([0-9A-Za-z]+)")?' + re.escape(_FRAME)
                   + r'(?=\{"type":")')


_LAST = "}" + _END  # a compact frame's "}", then the envelope's
_new_peeked = tuple.__new__  # Peeked(...) through its generated __new__ costs more


def peek(data: str) -> Peeked | None:
    """The fast path: an envelope as wskit writes it, split without parsing its frame.

    None when ``data`` is not in exactly that shape. The frame is *not* checked:
    anyone who can PUBLISH can write any origin, so check it with :func:`is_frame`
    before a client sees it; :func:`decode` everything else.
    """
    head = _HEAD.match(data)
    if head is None or not data.endswith(_LAST):
        return None
    origin, sig, offset, epoch = head.groups()
    return _new_peeked(Peeked, (origin, None if offset is None else int(offset), epoch,
                                data[head.end():-1], sig))


def is_frame(frame_text: str) -> bool:
    """Whether a peeked frame is what wskit writes: one JSON object with a string
    ``type`` and no ``offset`` or ``epoch`` of its own (those are the envelope's, and
    :func:`with_offset` adds them). Anything else (text after the object, a frame
    that is not JSON, a forged offset) is refused, so it never reaches a client."""
    try:
        frame = json.loads(frame_text)
    except (ValueError, RecursionError):
        return False
    return (isinstance(frame, dict) and isinstance(frame.get("type"), str)
            and "offset" not in frame and "epoch" not in frame)


def with_raw(text: str, fields: str) -> str:
    """Add already-encoded ``"name":value`` pairs (``fields``) to an encoded frame (a
    compact JSON object, never empty) without decoding it."""
    return f"{text[:-1]},{fields}}}"


def with_offset(text: str, offset: int, epoch: str) -> str:
    """Add ``"offset"`` and ``"epoch"`` to an encoded frame without re-encoding it:
    what :func:`decode` does to the frame of an envelope with an offset, done as text.
    The epoch rides on every message so that a client still connected when the
    history is lost sees the new epoch, never a silent gap."""
    return with_raw(text, f'"offset":{offset},"epoch":"{epoch}"')


def _lua(text: str) -> str:
    """``text`` as a Lua string literal (the fragments hold no quote or backslash)."""
    assert "'" not in text and "\\" not in text
    return f"'{text}'"


#: Lua expression: an envelope's text up to its offset. Needs the Lua locals
#: ``origin`` (the origin *already JSON-encoded*, as :func:`json.dumps` gives it)
#: and ``sig`` (hex, or '' for none); the append script writes
#: ``LUA_HEAD .. offset .. LUA_TAIL .. frame .. LUA_END``.
_LUA_SIG = _lua(_SIG + '"') + " .. sig .. " + _lua('"')
LUA_HEAD = f"{_lua(_ORIGIN)} .. origin .. (sig ~= '' and ({_LUA_SIG}) or '') .. {_lua(_OFFSET)}"
#: Lua expression: the text between the offset and the frame. Needs the Lua local
#: ``epoch`` (a hex string, written quoted as :func:`json.dumps` would).
LUA_TAIL = f"""{_lua(_EPOCH + '"')} .. epoch .. {_lua('"' + _FRAME)}"""
#: Lua expression: the envelope's last character, after the frame.
LUA_END = _lua(_END)
