"""Custom frame types with a schema, on both frameworks and across two instances."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel, Field

import wskit
from wskit.core.protocol import CloseCode
from wskit.exceptions import ConfigError, ProtocolError, ServerError


@dataclass
class Typing:
    roomId: str
    active: bool = True


class ReadUpTo(BaseModel):
    roomId: str
    offset: int = Field(ge=0)


@dataclass
class Nudge:
    to: str
    note: str | None = None


def install(server: wskit.ChatServer) -> None:
    """The application, registered on every instance."""

    @server.on("app.typing", Typing)
    async def typing(ctx, frame: Typing) -> None:
        await ctx.publish(frame.roomId, {"type": "app.typing", "roomId": frame.roomId,
                                         "userId": ctx.user, "active": frame.active})

    @server.on("app.read", ReadUpTo, action="read")
    async def read(ctx, frame: ReadUpTo) -> None:
        if frame.offset > 1000:
            raise ProtocolError("app.too_far", "no such offset yet")
        ctx.reply({"type": "app.read.ok", "offset": frame.offset})

    @server.on("app.nudge", Nudge)
    async def nudge(ctx, frame: Nudge) -> None:
        await ctx.send_to(frame.to, {"type": "app.nudge", "from": ctx.user, "note": frame.note})

    @server.on("app.crash")
    async def crash(ctx, frame: dict) -> None:
        raise RuntimeError("a bug in the application's handler")


async def test_custom_frames_cross_instances_with_one_reply_each(start, clients, framework,
                                                                  backplane_url) -> None:
    other = "fastapi" if framework == "aiohttp" else "aiohttp"
    a = await start(framework, backplane=backplane_url)
    b = await start(other, backplane=backplane_url)
    for srv in (a, b):
        install(srv.server)
    alice, carol = await clients(a, user="alice"), await clients(a, user="carol")
    bob = await clients(b, user="bob")
    for c in (alice, bob, carol):
        await c.join("room")
    ack = await alice.request({"type": "app.typing", "roomId": "room"})
    assert ack["type"] == "ack" and set(ack) == {"type", "ref"}
    for c in (bob, carol):  # the other members, on both instances; not the sender
        assert await c.expect("app.typing") == {"type": "app.typing", "roomId": "room",
                                                "userId": "alice", "active": True}
    reply = await bob.request({"type": "app.read", "roomId": "room", "offset": 7})
    assert reply["type"] == "app.read.ok" and reply["offset"] == 7
    await carol.request({"type": "app.nudge", "to": "bob", "note": "look"})
    assert (await bob.expect("app.nudge"))["from"] == "carol"
    assert not [f for f in alice.drain() if f["type"].startswith("app.")]


@pytest.mark.parametrize("frame, code", [
    ({"type": "app.typing"}, "missing_field"),
    ({"type": "app.typing", "roomId": 5}, "wrong_type"),
    ({"type": "app.typing", "roomId": "room", "active": "yes"}, "wrong_type"),
    ({"type": "app.typing", "roomId": "room", "extra": 1}, "invalid_value"),
    ({"type": "app.typing", "roomId": "elsewhere"}, "not_joined"),
    ({"type": "app.read", "roomId": "room"}, "missing_field"),
    ({"type": "app.read", "roomId": "room", "offset": -1}, "invalid_value"),
    ({"type": "app.read", "roomId": "room", "offset": "x"}, "wrong_type"),
    ({"type": "app.read", "roomId": "room", "offset": 5000}, "app.too_far"),
    ({"type": "app.unregistered"}, "unknown_type"),
])
async def test_a_refused_custom_frame_gets_its_error_and_the_connection_lives_on(
        start, clients, framework, frame, code) -> None:
    srv = await start(framework)
    install(srv.server)
    alice = await clients(srv, user="alice")
    await alice.join("room")
    with pytest.raises(ServerError) as err:
        await alice.request(frame)
    assert err.value.code == code and err.value.args
    assert (await alice.request({"type": "ping"}))["type"] == "pong"  # it lives on


async def test_custom_frames_pass_the_rate_limit_and_authorization(start, clients,
                                                                   framework) -> None:
    asked = []

    def authorize(user: str, claims: dict, action: str, target: str) -> bool:
        asked.append((user, action, target))
        return user != "mallory"

    # the server's one policy decides custom frames too (an action per frame type)
    srv = await start(framework, rate_limit=0.1, rate_burst=2, authorize=authorize)
    install(srv.server)
    mallory = await clients(srv, user="mallory")
    with pytest.raises(ServerError) as err:
        await mallory.request({"type": "app.read", "roomId": "room", "offset": 1})
    assert err.value.code == "forbidden" and asked == [("mallory", "read", "room")]
    await mallory.request({"type": "ping"})  # the bucket of 2 is spent
    with pytest.raises(ServerError) as err:
        await mallory.request({"type": "app.read", "roomId": "room", "offset": 1})
    assert err.value.code == "rate_limited" and len(asked) == 1  # refused before the hook


async def test_a_bug_in_a_handler_closes_with_1011(start, clients, framework) -> None:
    srv = await start(framework)
    install(srv.server)
    alice = await clients(srv, user="alice")
    await alice.send_raw({"type": "app.crash", "ref": 1})
    assert await alice.wait_closed(timeout=5) == CloseCode.INTERNAL_ERROR


def test_types_must_be_namespaced() -> None:
    server = wskit.ChatServer(backplane="none")
    for bad in ("typing", "message", "wskit.disconnect", "App.typing", ""):
        with pytest.raises(ConfigError, match="prefix.name"):
            server.on(bad)
    with pytest.raises(ConfigError, match="dataclass or a pydantic"):
        server.on("app.x", dict)
