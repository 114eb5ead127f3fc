"""Bad input gets a clear answer; the server and everyone else go on."""

from __future__ import annotations

import aiohttp
import pytest

import wskit
from wskit import CloseCode, ConnectionClosed

BAD_FRAMES = [
    ("{not json", "invalid_json"),
    ("[1, 2, 3]", "not_an_object"),
    ("42", "not_an_object"),
    ('{"roomId": "lobby"}', "missing_field"),
    ('{"type": "message", "roomId": "lobby"}', "missing_field"),
    ('{"type": "message", "roomId": "lobby", "content": 5}', "wrong_type"),
    ('{"type": "join", "roomId": ["lobby"]}', "wrong_type"),
    ('{"type": "join", "roomId": "no spaces allowed"}', "invalid_value"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "message", "roomId": "elsewhere", "content": "hi"}', "not_joined"),
    ('{"type": "leave", "roomId": "elsewhere"}', "not_joined"),
    ('{"type": "message", "roomId": "lobby", "content": "hi", "id": 7}', "wrong_type"),
    ('{"type": "message", "roomId": "lobby", "content": "hi", "id": ""}', "invalid_value"),
    ('{"type": "message", "roomId": "lobby", "content": "hi", "id": "a\\nb"}', "invalid_value"),
]


async def _room(start, clients, framework, **settings):
    srv = await start(framework, **settings)
    bad = await clients(srv, user="mallory")
    good = await clients(srv, user="alice")
    other = await clients(srv, user="bob")
    for c in (bad, good, other):
        await c.join("lobby")
    return srv, bad, good, other


async def _room_still_works(good: wskit.Client, other: wskit.Client, text: str) -> None:
    await good.send("lobby", text)
    assert (await other.receive())["content"] == text


@pytest.mark.parametrize("frame, code", BAD_FRAMES, ids=[c for _, c in BAD_FRAMES])
async def test_bad_frame_gets_error_frame_and_nothing_breaks(start, clients, framework,
                                                             frame, code) -> None:
    srv, bad, good, other = await _room(start, clients, framework)
    await bad.send_raw(frame)
    err = await bad.receive()
    assert err["type"] == "error" and err["code"] == code and err["message"]
    # the sender is still connected and served, and so is everyone else
    await bad.send("lobby", "still here")
    assert (await good.receive())["content"] == "still here"
    assert (await other.receive())["content"] == "still here"
    await _room_still_works(good, other, "after " + code)
    assert len(srv.server.hub) == 3


async def test_error_frame_echoes_ref(start, clients, framework) -> None:
    srv, bad, *_ = await _room(start, clients, framework)
    await bad.send_raw({"type": "message", "roomId": "nowhere", "content": "x", "ref": "q1"})
    err = await bad.receive()
    assert err["ref"] == "q1" and err["code"] == "not_joined"


async def test_binary_frame_closes_with_1003(start, clients, framework) -> None:
    srv, bad, good, other = await _room(start, clients, framework)
    await bad.send_raw(b"\x00\x01binary")
    assert await bad.wait_closed() == CloseCode.UNSUPPORTED_DATA
    assert "binary" in bad.close_reason
    await _room_still_works(good, other, "after binary")
    assert srv.server.hub.members("lobby") == ["alice", "bob"]


async def test_oversized_frame_closes_with_1009(start, clients, framework) -> None:
    srv, bad, good, other = await _room(start, clients, framework, max_message_size=1024)
    await bad.send_raw({"type": "message", "roomId": "lobby", "content": "x" * 2000})
    assert await bad.wait_closed() == CloseCode.MESSAGE_TOO_BIG
    await _room_still_works(good, other, "after oversized")
    # a frame just under the limit is fine
    await good.send("lobby", "y" * 900)
    assert len((await other.receive())["content"]) == 900
    assert srv.server.hub.members("lobby") == ["alice", "bob"]


async def test_invalid_utf8_text_frame_is_refused(start, framework) -> None:
    # RFC 6455 8.1: a text frame must be UTF-8; the framework closes with 1007.
    srv = await start(framework)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(srv.url_for("u")) as ws:
            await ws.receive()  # welcome
            await ws._writer.send_frame(b"\xff\xfe", aiohttp.WSMsgType.TEXT)  # noqa: SLF001
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1007


@pytest.mark.parametrize("token, reason", [
    (None, "missing token"),
    ("garbage", "invalid token"),
    (wskit.issue_token("eve", "another-secret-of-sufficient-length!!"), "signature"),
    ("expired", "expired"),
])
async def test_no_bad_or_expired_token_closes_4001(start, framework, token, reason) -> None:
    srv = await start(framework)
    if token == "expired":
        token = wskit.issue_token("eve", srv.server.secret, ttl=-10)
    client = wskit.Client(srv.url, token=token)
    with pytest.raises(ConnectionClosed) as info:
        await client.connect()
    assert info.value.code == CloseCode.UNAUTHORIZED == 4001
    assert reason in info.value.reason
    await client.close()
    assert len(srv.server.hub) == 0


async def test_foreign_origin_refused_at_handshake(start, clients, framework) -> None:
    srv = await start(framework, origins=("http://good.example",))
    evil = wskit.Client(srv, user="victim", headers={"Origin": "http://evil.example"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await evil.connect()
    assert info.value.status == 403
    await evil.close()
    ok = await clients(srv, user="victim", headers={"Origin": "http://good.example"})
    assert ok.welcome["userId"] == "victim"
    no_origin = await clients(srv, user="script")  # not a browser: no Origin header
    assert no_origin.welcome["userId"] == "script"


async def test_a_bug_closes_only_that_connection_with_1011(start, clients, framework, caplog) -> None:
    """A server-side exception (here: an extension that crashes on one word) closes that
    connection with 1011 instead of a bare 1006, logs it once, and spares everyone else."""

    class Buggy(wskit.ChatServer):
        async def handle_text(self, conn, text):  # type: ignore[no-untyped-def]
            if "boom" in text:
                raise ZeroDivisionError("a bug in an extension")
            await super().handle_text(conn, text)

    srv = await start(framework, server=Buggy(backplane="none"))
    victim = await clients(srv, user="victim")
    good, other = await clients(srv, user="good"), await clients(srv, user="other")
    for c in (victim, good, other):
        await c.join("lobby")
    await victim.send_raw({"type": "message", "roomId": "lobby", "content": "boom"})
    assert await victim.wait_closed() == CloseCode.INTERNAL_ERROR
    assert victim.close_reason == "internal server error"  # no internals leak to the client
    await _room_still_works(good, other, "after the bug")
    assert [r for r in caplog.records if r.levelname == "ERROR"][0].exc_info[0] is ZeroDivisionError
