"""JSON objects as post content, where the application says so (``content_type="json"``):
both frameworks, across two instances, through history and the server API."""

from __future__ import annotations

import pytest

import wskit
from wskit.core.protocol import MAX_CONTENT_DEPTH
from wskit.exceptions import ConfigError, ServerError

CARD = {"kind": "card", "title": "Déjà vu", "items": [1, 2.5, None, True, {"n": "ok"}]}


async def test_object_content_travels_and_is_kept(start, clients, framework,
                                                  backplane_url) -> None:
    other = "fastapi" if framework == "aiohttp" else "aiohttp"
    a = await start(framework, backplane=backplane_url, content_type="json")
    b = await start(other, backplane=backplane_url, content_type="json")
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    sent = await alice.send("room", CARD)  # type: ignore[arg-type]
    got = await bob.expect("message")
    assert got["content"] == CARD and got["offset"] == sent["offset"]
    await alice.send("room", "plain text still works")
    assert (await bob.expect("message"))["content"] == "plain text still works"
    offset = await a.server.publish("room", {"kind": "notice", "text": "from code"})
    assert (await bob.expect("message"))["content"] == {"kind": "notice", "text": "from code"}
    page = await b.server.history("room")
    assert [m["content"] for m in page["messages"]] == [
        CARD, "plain text still works", {"kind": "notice", "text": "from code"}]
    assert page["offset"] == offset


def nested(depth: int) -> dict:
    content: dict = {"leaf": 1}
    for _ in range(depth - 1):
        content = {"n": content}
    return content


@pytest.mark.parametrize("content_type, content, code", [
    ("text", {"kind": "card"}, "wrong_type"),          # objects only where allowed
    ("json", ["a", "list"], "wrong_type"),             # an object, not any JSON value
    ("json", 5, "wrong_type"),
    ("json", nested(MAX_CONTENT_DEPTH + 1), "invalid_value"),
])
async def test_refused_content_gets_its_error_and_the_connection_lives_on(
        start, clients, framework, content_type, content, code) -> None:
    srv = await start(framework, content_type=content_type)
    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    for c in (alice, bob):
        await c.join("room")
    with pytest.raises(ServerError) as err:
        await alice.request({"type": "message", "roomId": "room", "content": content})
    assert err.value.code == code
    await alice.send("room", "after")
    assert (await bob.expect("message"))["content"] == "after"  # nothing else came


async def test_strings_anywhere_in_an_object_must_be_unicode(start, clients, framework) -> None:
    srv = await start(framework, content_type="json")
    alice = await clients(srv, user="alice")
    await alice.join("room")
    deepest = nested(MAX_CONTENT_DEPTH)
    assert (await alice.send("room", deepest))["type"] == "sent"  # type: ignore[arg-type]
    for raw in ('{"type":"message","roomId":"room","content":{"\\ud800":1}}',
                '{"type":"message","roomId":"room","content":{"a":["ok","\\udfff"]}}'):
        await alice.send_raw(raw)
        error = await alice.expect("error")
        assert error["code"] == "invalid_value" and "surrogate" in error["message"]
    assert (await alice.request({"type": "ping"}))["type"] == "pong"


async def test_the_server_api_refuses_what_a_client_would_be_refused(make_server) -> None:
    server = await make_server(content_type="json")
    for content in (nested(MAX_CONTENT_DEPTH + 1), {"\ud800": 1}, [1, 2]):
        with pytest.raises(ValueError):
            await server.publish("room", content)  # type: ignore[arg-type]
    big = {"text": "x" * server.settings.max_message_size}
    with pytest.raises(ValueError):
        await server.publish("room", big)
    text_only = await make_server()
    with pytest.raises(ValueError):
        await text_only.publish("room", {"kind": "card"})
    with pytest.raises(ConfigError):
        wskit.Settings(content_type="xml")
