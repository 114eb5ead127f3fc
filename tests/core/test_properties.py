"""Property-based tests (Hypothesis) of the parser and of the one-reply rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit import ChatServer
from wskit.core import protocol
from wskit.core.protocol import CloseCode
from wskit.exceptions import ProtocolError
from wskit.testing.fuzz import expected_replies
from wskit.testing.memory import Peer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
KEYS = ("type", "roomId", "content", "to", "ref")
TYPES = ("join", "leave", "message", "direct", "ping", "pong", "history", "x", "")
frames = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(st.sampled_from(TYPES), st.sampled_from(("r", "lobby", "a b", "bob")),
              json_values),
    max_size=5,
).map(json.dumps)
texts = st.one_of(st.text(), frames, frames.map(lambda f: f[: len(f) // 2]),
                  st.integers(1, 40_000).map(lambda n: "[" * n))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_parse_raises_nothing_but_protocol_error(text: str) -> None:
    try:
        request = protocol.parse(text)
    except ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        return
    # whatever parses can be answered: every string in it encodes to UTF-8
    for value in vars(request).values() if hasattr(request, "__dict__") else (
            getattr(request, f) for f in request.__slots__):
        if isinstance(value, str):
            value.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=6))
def test_every_frame_gets_exactly_one_reply_or_a_documented_close(batch: list[str]) -> None:
    asyncio.run(_one_reply_each(batch))


async def _one_reply_each(batch: list[str]) -> None:
    server = ChatServer(backplane="none", ping_interval=None, ping_timeout=None)
    await server.start()
    try:
        me = await Peer(server, "me").connect()
        for text in batch:
            expect = expected_replies(text)
            me.send(text)
            me.send({"type": "ping", "ref": "fence"})
            replies: list[dict[str, Any]] = []
            while True:
                frame = await me.recv()
                if frame.get("ref") == "fence" and frame["type"] == "pong":
                    break
                replies.append(frame)
            assert len(replies) == expect, (text, replies)
            assert not me.transport.closed.is_set()
            assert me.transport.close_code not in (CloseCode.INTERNAL_ERROR,)
    finally:
        await server.stop()

