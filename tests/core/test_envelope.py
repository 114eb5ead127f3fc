"""The backplane envelope has one owner (wskit.core.envelope): its writers agree.

Python's encode and decode round-trip; the fast path (peek + with_offset, for an
instance's own envelopes) gives exactly the text the slow path (decode + encode)
gives; and the envelope the Redis append script builds from the Lua fragments
decodes to the same thing, on fakeredis's Lua and on a real Redis when
WSKIT_REDIS_URL is set.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import fakeredis
import pytest
import redis
from conftest import REDIS_URL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit.backplane import RedisBackplane, RoomPost
from wskit.core import envelope, protocol
from wskit.core.history import Retention

pytestmark = pytest.mark.timeout(120)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)
#: server frames as the server writes them: "type" first, then anything (never
#: "offset" or "epoch", which only the envelope adds)
frames = st.builds(
    lambda kind, rest: {"type": kind, **rest},
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("type", "offset", "epoch")),
                    json_values, max_size=4),
)
#: instance ids as wskit makes them (NAME-hex), optionally "/connection id"
plain_origins = st.from_regex(r"[a-z][a-z0-9-]{0,12}(/[a-z0-9-]{1,10})?", fullmatch=True)
epochs = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)
offsets = st.integers(1, 2**53)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(), frames, st.none() | st.tuples(offsets, epochs))
def test_encode_then_decode_gives_back_origin_and_frame(
        origin: str, frame: dict[str, Any], position: tuple[int, str] | None) -> None:
    offset, epoch = position or (None, None)
    data = envelope.encode(origin, protocol.encode(frame), offset, epoch)
    got_origin, got_frame = envelope.decode(data)
    want = dict(frame)
    if position is not None:
        want.update(offset=offset, epoch=epoch)
    assert got_origin == origin and got_frame == want


sigs = st.sampled_from(["", "0" * 32]) | st.text("0123456789abcdef", min_size=32,
                                                 max_size=32)


@SETTINGS
@given(plain_origins, frames, st.none() | st.tuples(offsets, epochs), sigs)
def test_the_fast_path_equals_the_slow_path(
        origin: str, frame: dict[str, Any], position: tuple[int, str] | None,
        sig: str) -> None:
    offset, epoch = position or (None, None)
    text = protocol.encode(frame)
    data = envelope.encode(origin, text, offset, epoch, sig)
    head = envelope.peek(data)
    assert head == (origin, offset, epoch, text, sig or None)
    if position is not None:
        slow = protocol.encode(envelope.decode(data)[1])
        assert envelope.with_offset(head.frame_text, *position) == slow


@pytest.mark.parametrize("data", [
    '{"origin":"a\\"b","frame":{"type":"x"}}',  # an escape in the origin
    '{"origin":"a","offset":1,"frame":{"type":"x"}}',  # an offset without epoch
    '{"origin":"a","frame":{"type":"x"}',  # truncated
    '{"frame":{"type":"x"},"origin":"a"}',  # another writer's key order
    '{"origin": "a", "frame": {"type": "x"}}',  # not compact
])
def test_peek_declines_what_wskit_does_not_write(data: str) -> None:
    assert envelope.peek(data) is None


#: builds one envelope with the fragments the append script uses
_LUA = (f"local origin, epoch, sig = ARGV[1], ARGV[3], ARGV[5]\n"
        f"return {envelope.LUA_HEAD} .. ARGV[2] .. {envelope.LUA_TAIL} .. ARGV[4] "
        f".. {envelope.LUA_END}")


def lua_clients() -> list[Any]:
    params: list[Any] = ["fakeredis"]
    params.append(pytest.param("redis", marks=pytest.mark.skipif(
        not REDIS_URL, reason="set WSKIT_REDIS_URL to test on a real Redis")))
    return params


@pytest.fixture(params=lua_clients(), scope="module")
def lua(request: pytest.FixtureRequest) -> Any:
    """A synchronous client whose EVAL runs the fragments (no key is touched)."""
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        assert REDIS_URL
        client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.text(), frames, offsets, epochs, sigs)
def test_the_lua_envelope_decodes_like_the_python_one(
        lua: Any, origin: str, frame: dict[str, Any], offset: int, epoch: str,
        sig: str) -> None:
    text = protocol.encode(frame)
    built = lua.eval(_LUA, 0, json.dumps(origin), offset, epoch, text, sig).decode()
    assert built == envelope.encode(origin, text, offset, epoch, sig)
    assert envelope.decode(built) == envelope.decode(envelope.encode(origin, text, offset,
                                                                     epoch))


async def test_the_append_script_publishes_what_encode_writes(backplane_url: str) -> None:
    """The real script, end to end: what subscribers hear is ``encode``'s text."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    key, channel = f"{ns}:{{room:r}}", f"{ns}:room:r"
    frames_sent = ['{"type":"message","content":"é \\" x"}', '{"type":"message","n":2}']
    async with RedisBackplane(backplane_url) as bp:
        pubsub = bp.client.pubsub()
        await pubsub.subscribe(channel)
        try:
            sent = await bp.send([RoomPost(channel, "inst-1/c9", text, key, Retention(10, 60),
                                           sig=f"{i:032x}")
                                  for i, text in enumerate(frames_sent)])
            heard: list[str] = []
            while len(heard) < len(frames_sent):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    heard.append(message["data"])
            page = await bp.read(key, Retention(10, 60), after=0)  # the sigs are stored too
        finally:
            await pubsub.aclose()
            await bp.client.delete(f"{key}:meta", f"{key}:stream")
    assert heard == [envelope.encode("inst-1/c9", text, *result,  # type: ignore[misc]
                                     sig=f"{i:032x}")
                     for i, (text, result) in enumerate(zip(frames_sent, sent))]
    assert [(e.text, e.sig) for e in page.entries] == [
        (text, f"{i:032x}") for i, text in enumerate(frames_sent)]
