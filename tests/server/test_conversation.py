"""One conversation, played identically against both frameworks."""

from __future__ import annotations

import pytest

import wskit
from wskit import ServerError


async def test_same_conversation_on_both_frameworks(start, clients) -> None:
    transcripts = {}
    for framework in ("aiohttp", "fastapi"):
        srv = await start(framework)
        alice = await clients(srv, user="alice")
        bob = await clients(srv, user="bob")
        log = [alice.welcome["userId"], bob.welcome["userId"], alice.welcome["heartbeat"]]
        for who in (alice, bob):
            joined = await who.join("lobby")
            assert isinstance(joined.pop("epoch"), str)  # random per history: not compared
            log.append(joined)
        sent = await alice.send("lobby", "hello, bob")
        got = await bob.receive()
        assert got["id"] == sent["id"] and got["timestamp"] == sent["timestamp"]
        assert got["offset"] == sent["offset"] == 1
        log.append({k: got[k] for k in ("type", "roomId", "userId", "content")})
        await bob.direct("alice", "psst")
        got = await alice.receive()
        log.append({k: got[k] for k in ("type", "from", "to", "content")})
        log.append(await alice.request({"type": "ping"}))
        log.append(await bob.leave("lobby"))
        with pytest.raises(ServerError) as info:
            await bob.send("lobby", "after leaving")
        log.append(info.value.code)
        await alice.send_raw("{oops")
        err = await alice.receive()
        log.append((err["type"], err["code"]))
        transcripts[framework] = log
    assert transcripts["aiohttp"] == transcripts["fastapi"]
    assert transcripts["aiohttp"][-2:] == ["not_joined", ("error", "invalid_json")]


async def test_message_frame_shape(start, clients, framework) -> None:
    srv = await start(framework)
    a, b = await clients(srv, user="a"), await clients(srv, user="b")
    await a.join("r")
    await b.join("r")
    ack = await a.send("r", "x")
    assert set(ack) == {"type", "id", "roomId", "timestamp", "ref", "offset"}
    assert ack["type"] == "sent"
    msg = await b.receive()
    assert set(msg) == {"type", "roomId", "userId", "content", "timestamp", "id", "offset",
                        "epoch"}
    assert msg["offset"] == ack["offset"] == 1


async def test_direct_to_offline_user_is_an_error(start, clients, framework) -> None:
    srv = await start(framework)
    a = await clients(srv, user="a")
    with pytest.raises(ServerError, match="user_offline"):
        await a.direct("ghost", "hello?")


async def test_posting_without_joining_is_a_documented_choice(start, clients, framework) -> None:
    strict = await start(framework)
    outsider = await clients(strict, user="outsider")
    with pytest.raises(ServerError, match="not_joined"):
        await outsider.send("lobby", "let me in")
    open_house = await start(framework, post_requires_join=False)
    member = await clients(open_house, user="member")
    outsider = await clients(open_house, user="outsider")
    await member.join("lobby")
    await outsider.send("lobby", "heard anyway")
    assert (await member.receive())["content"] == "heard anyway"


async def test_client_iterates_frames_until_closed(start, clients, framework) -> None:
    srv = await start(framework)
    a, b = await clients(srv, user="a"), await clients(srv, user="b")
    await a.join("r")
    await b.join("r")
    for i in range(3):
        await a.send("r", str(i))
    await srv.stop()  # closes b with 1012 (drain) after flushing what it had queued
    got = [frame["content"] async for frame in b if frame["type"] == "message"]
    assert got == ["0", "1", "2"] and b.close_code == 1012


async def test_unknown_room_when_rooms_are_fixed(start, clients, framework) -> None:
    srv = await start(framework, rooms={"lobby", "games"})
    a = await clients(srv, user="a")
    await a.join("lobby")
    with pytest.raises(ServerError) as info:
        await a.join("secret")
    assert info.value.code == "unknown_room" and "games, lobby" in info.value.message




def test_sync_client_and_threaded_server() -> None:
    with wskit.serve_in_thread("fastapi", backplane="none", name="sync-test") as srv:
        with wskit.SyncClient(srv, user="a") as a, wskit.SyncClient(srv, user="b") as b:
            a.join("r")
            b.join("r")
            a.send("r", "from a script")
            assert b.receive(timeout=5)["content"] == "from a script"
