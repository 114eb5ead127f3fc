"""Lifecycle hooks (on_connect, on_join, on_post, on_leave, on_disconnect) on both
frameworks, with real clients, across two instances where a post travels."""

from __future__ import annotations

import asyncio
import logging

import pytest

import wskit
from wskit.core.protocol import CloseCode
from wskit.core.reconnect import should_reconnect
from wskit.exceptions import ConfigError, ConnectionClosed, ProtocolError, ServerError


class Journal:
    """What the hooks saw, and an event per entry so a test waits instead of sleeping."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, ...]] = []
        self._changed = asyncio.Event()

    def add(self, *entry: str) -> None:
        self.entries.append(entry)
        self._changed.set()

    async def until(self, entry: tuple[str, ...], timeout: float = 5.0) -> None:
        async def wait() -> None:
            while entry not in self.entries:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), timeout)


def install(server: wskit.ChatServer, journal: Journal) -> None:
    @server.on_connect
    async def connect(ctx) -> None:
        if ctx.user == "mallory":
            raise ProtocolError("app.banned", "mallory is banned here")
        journal.add("connect", ctx.user, str(ctx.claims["sub"]))
        ctx.send({"type": "app.hello", "to": ctx.user})

    @server.on_join
    async def join(ctx, room: str) -> None:
        if room.startswith("vip-") and ctx.user != "alice":
            raise ProtocolError("app.invite_only", f"{room} is invite-only")
        journal.add("join", ctx.user, room)

    @server.on_post
    async def post(ctx, room: str, content: str) -> str | None:
        if "spam" in content:
            raise ProtocolError("app.spam", "no spam")
        journal.add("post", ctx.user, room, content)
        return content.replace("darn", "d**n")

    @server.on_leave
    async def leave(ctx, room: str) -> None:
        journal.add("leave", ctx.user, room)

    @server.on_disconnect
    async def disconnect(ctx) -> None:
        journal.add("disconnect", ctx.user)


async def test_hooks_see_a_connection_through_its_life(start, clients, framework,
                                                       backplane_url) -> None:
    other = "fastapi" if framework == "aiohttp" else "aiohttp"
    a = await start(framework, backplane=backplane_url)
    b = await start(other, backplane=backplane_url)
    journal = Journal()
    for srv in (a, b):
        install(srv.server, journal)
    alice = await clients(a, user="alice")
    assert (await alice.expect("app.hello"))["to"] == "alice"  # before any request of hers
    bob = await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("room")
    await alice.join("vip-lounge")
    sent = await alice.send("room", "darn, it works")
    message = await bob.expect("message")
    # the hook's content reached the other instance's member, with the post's offset
    assert message["content"] == "d**n, it works" and message["offset"] == sent["offset"]
    await alice.leave("vip-lounge")
    await journal.until(("leave", "alice", "vip-lounge"))
    await alice.close()
    await journal.until(("disconnect", "alice"))
    await a.server.settled()
    mine = [e for e in journal.entries if e[1] == "alice"]
    assert mine == [("connect", "alice", "alice"), ("join", "alice", "room"),
                    ("join", "alice", "vip-lounge"), ("post", "alice", "room", "darn, it works"),
                    ("leave", "alice", "vip-lounge"), ("leave", "alice", "room"),
                    ("disconnect", "alice")]


async def test_hooks_refuse_with_their_own_codes_and_the_connection_lives_on(
        start, clients, framework) -> None:
    srv = await start(framework)
    journal = Journal()
    install(srv.server, journal)
    bob, carol = await clients(srv, user="bob"), await clients(srv, user="carol")
    with pytest.raises(ServerError) as err:
        await bob.join("vip-lounge")
    assert err.value.code == "app.invite_only"
    for c in (bob, carol):
        await c.join("room")
    with pytest.raises(ServerError) as err:
        await bob.send("room", "buy spam now")
    assert err.value.code == "app.spam"
    await bob.send("room", "hello")
    # carol got the post that was allowed, and nothing of the one refused
    assert (await carol.expect("message"))["content"] == "hello"
    assert not [f for f in carol.drain() if f["type"] == "message"]
    assert (await bob.request({"type": "ping"}))["type"] == "pong"


async def test_on_connect_refuses_with_4003_and_no_disconnect_hook(start, framework) -> None:
    srv = await start(framework)
    journal = Journal()
    install(srv.server, journal)
    client = wskit.Client(srv.url, user="mallory")
    with pytest.raises(ConnectionClosed) as info:
        await client.connect()
    await client.close()
    assert info.value.code == CloseCode.FORBIDDEN == 4003
    assert "banned" in info.value.reason
    assert not should_reconnect(CloseCode.FORBIDDEN, fresh_token=True)
    await srv.server.settled()
    assert not [e for e in journal.entries if e[1] == "mallory"]


async def test_a_hook_that_raises_a_bug_closes_only_its_connection(
        start, clients, framework, caplog: pytest.LogCaptureFixture) -> None:
    srv = await start(framework)
    gone = asyncio.Event()

    @srv.server.on_post
    async def post(ctx, room: str, content: str) -> None:
        if content == "boom":
            raise RuntimeError("a bug in the application's hook")

    @srv.server.on_disconnect
    async def disconnect(ctx) -> None:
        gone.set()
        raise RuntimeError("a bug after the fact")

    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    for c in (alice, bob):
        await c.join("room")
    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        with pytest.raises(ConnectionClosed) as info:
            await alice.send("room", "boom")
        assert info.value.code == CloseCode.INTERNAL_ERROR
        await asyncio.wait_for(gone.wait(), 5)
        await srv.server.settled()
    assert "after the fact" in caplog.text  # logged, not lost
    sent = await bob.send("room", "still here")  # everyone else keeps working
    assert sent["type"] == "sent"


def test_hooks_are_async_functions_with_known_names() -> None:
    server = wskit.ChatServer(backplane="none")
    with pytest.raises(ConfigError):
        server.on_post(lambda ctx, room, content: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        server.hooks.register("on_typing", post_hook)


async def post_hook(ctx, room: str, content: str) -> None:
    """A well-formed hook, registered under a name that does not exist."""
