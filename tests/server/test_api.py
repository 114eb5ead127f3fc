"""The server API in Python, across two instances: publish, disconnect, presence,
history; and wskit.Publisher, which serves no sockets."""

from __future__ import annotations

import pytest

import wskit
from wskit.core.protocol import CloseCode
from wskit.exceptions import ConfigError


async def two_instances(start, backplane_url: str, **settings):
    a = await start("aiohttp", backplane=backplane_url, **settings)
    b = await start("fastapi", backplane=backplane_url, **settings)
    return a, b


async def test_publish_reaches_every_member_on_both_instances_in_offset_order(
        start, clients, backplane_url) -> None:
    a, b = await two_instances(start, backplane_url)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    first = await alice.send("room", "from a client")
    offset = await a.server.publish("room", "from the server", user="ops")
    assert offset == first["offset"] + 1
    for c in (alice, bob):
        frames = [await c.expect("message") for _ in range(1 if c is alice else 2)]
        got = frames[-1]
        assert (got["userId"], got["content"], got["offset"]) == ("ops", "from the server",
                                                                  offset)
    # the same path as a client's post: in the history, and the next post follows it
    page = await b.server.history("room", limit=2)
    assert [m["content"] for m in page["messages"]] == ["from a client", "from the server"]
    assert page["offset"] == offset and page["messages"][-1]["offset"] == offset
    assert (await bob.send("room", "after"))["offset"] == offset + 1
    assert a.server.stats.api_publishes == 1 and a.server.stats.posts == 2


async def test_disconnect_closes_a_user_on_every_instance(start, clients, backplane_url) -> None:
    a, b = await two_instances(start, backplane_url)
    bob_a, bob_b = await clients(a, user="bob"), await clients(b, user="bob")
    carol = await clients(b, user="carol")
    for c in (bob_a, bob_b, carol):
        await c.join("room")
    result = await a.server.disconnect("bob", 4403, "kicked by a moderator")
    assert result == (1, 1)  # one connection here, one other instance heard it
    for c in (bob_a, bob_b):
        assert await c.wait_closed(timeout=5) == 4403
        assert c.close_reason == "kicked by a moderator"
        assert not [f for f in c.drain() if f.get("type") == "wskit.disconnect"]
    # carol lives on, and the control frame never reached a client
    assert (await carol.send("room", "still here"))["type"] == "sent"
    assert not [f for f in carol.drain() if f.get("type") == "wskit.disconnect"]


async def test_disconnect_defaults_to_a_final_close(start, clients) -> None:
    srv = await start("aiohttp")  # standalone: the local half only
    dave = await clients(srv, user="dave")
    assert await srv.server.disconnect("dave") == (1, 0)
    assert await dave.wait_closed(timeout=5) == CloseCode.POLICY_VIOLATION
    assert await srv.server.disconnect("nobody") == (0, 0)


async def test_presence_and_history_span_the_instances(start, clients, backplane_url) -> None:
    a, b = await two_instances(start, backplane_url)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    assert await a.server.api.presence("room") == ["alice", "bob"]
    assert await b.server.api.presence("room") == ["alice", "bob"]
    for i in range(4):
        await bob.send("room", f"m{i}")
    page = await a.server.history("room", 3)
    assert [m["content"] for m in page["messages"]] == ["m1", "m2", "m3"]
    assert [m["offset"] for m in page["messages"]] == [2, 3, 4]


async def test_publisher_serves_no_sockets_and_posts_like_a_client(
        start, clients, backplane_url) -> None:
    a, b = await two_instances(start, backplane_url)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    posted = await alice.send("room", "hello")
    async with wskit.Publisher(backplane_url, namespace=a.server.settings.namespace) as pub:
        assert pub.backplane.channels == set()  # it subscribes to nothing
        offset = await pub.publish("room", "build 42 is green", user="ci")
        assert offset == posted["offset"] + 1
        got = await bob.expect("message")
        assert got["content"] == "hello"
        for c in (alice, bob):
            got = await c.expect("message")
            assert (got["userId"], got["content"], got["offset"]) == ("ci", "build 42 is green",
                                                                      offset)
        assert await pub.presence("room") == ["alice", "bob"]
        page = await pub.history("room", 5)
        assert [m["content"] for m in page["messages"]] == ["hello", "build 42 is green"]
        assert await pub.disconnect("bob", 4000, "maintenance") == 1  # b heard it
        assert await bob.wait_closed(timeout=5) == 4000
        with pytest.raises(ValueError, match="roomId"):
            await pub.publish("no spaces allowed", "x")


async def test_history_off_publishes_without_offsets(start, clients, backplane_url) -> None:
    a, b = await two_instances(start, backplane_url, history_size=0)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    assert await b.server.publish("room", "no offset") is None
    for c in (alice, bob):
        got = await c.expect("message")
        assert got["content"] == "no offset" and "offset" not in got
    with pytest.raises(ConfigError, match="history is off"):
        await a.server.history("room")


async def test_standalone_publish_has_offsets_too(make_server) -> None:
    server = await make_server()
    assert await server.publish("room", "one") == 1
    assert await server.publish("room", "two", user="bot") == 2
    page = await server.history("room")
    assert [(m["userId"], m["content"]) for m in page["messages"]] == [("server", "one"),
                                                                       ("bot", "two")]


@pytest.mark.parametrize("args, match", [
    (("bad room", "x"), "roomId"),
    (("room", 42), "content"),
    (("room", "\ud800"), "surrogate"),
    (("room", "x" * 70_000), "longer than"),
])
async def test_publish_refuses_what_a_client_would_be_refused(make_server, args, match) -> None:
    server = await make_server()
    with pytest.raises(ValueError, match=match):
        await server.publish(*args)
    with pytest.raises(ValueError, match="userId"):
        await server.publish("room", "x", user="")


async def test_disconnect_refuses_reserved_codes(make_server) -> None:
    server = await make_server()
    for code in (1005, 1006, 2000, 5000):
        with pytest.raises(ValueError, match="code"):
            await server.disconnect("bob", code)


async def test_a_forged_control_frame_closes_nobody_and_reaches_nobody(
        start, clients, backplane_url) -> None:
    # a control frame with a bad code on the user channel is dropped, not delivered
    a = await start("aiohttp", backplane=backplane_url)
    bob = await clients(a, user="bob")
    relay = a.server.relay
    from wskit.backplane import encode_envelope

    await relay.backplane.publish(relay.user_channel("bob"), encode_envelope(
        "elsewhere", '{"type":"wskit.disconnect","code":1006,"reason":""}'))
    await relay.backplane.publish(relay.user_channel("bob"), encode_envelope(
        "elsewhere", '{"type":"direct","from":"x","to":"bob","content":"hi",'
        '"timestamp":1.0,"id":"x-1"}'))
    got = await bob.receive(timeout=5)  # the next frame: the direct, not the forgery
    assert (got["type"], got["content"]) == ("direct", "hi") and not bob.closed
    assert not [f for f in bob.drain() if f.get("type") == "wskit.disconnect"]
