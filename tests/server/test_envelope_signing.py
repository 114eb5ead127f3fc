"""Forged envelopes on the bus never reach a client (docs/protocol.md, "Between instances").

Whoever can PUBLISH on the backplane's Redis plays the attacker here, with the
public instance id of the server it targets; the clients are real, on real
servers, so what they do not get, no client gets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import wskit
from wskit.backplane import RedisBackplane, encode_envelope

pytestmark = pytest.mark.timeout(60)

KEY = "the-app-s-backplane-key-0123456789"


def _message(content: str, user: str = "alice") -> str:
    return json.dumps({"type": "message", "roomId": "lobby", "userId": user,
                       "content": content, "timestamp": 0, "id": "x-1"}, separators=(",", ":"))


async def _inject(url: str, channel: str, *envelopes: str) -> None:
    async with RedisBackplane(url) as attacker:
        for data in envelopes:
            await attacker.publish(channel, data)


async def test_an_envelope_with_this_instances_origin_but_not_its_signature_is_dropped(
        start: Any, clients: Any, framework: str, backplane_url: str) -> None:
    a = await start(framework, backplane=backplane_url)
    bob, carol = await clients(a, user="bob"), await clients(a, user="carol")
    joined = await bob.join("lobby")
    await carol.join("lobby")
    me, ns = a.server.instance_id, a.server.settings.namespace
    top, epoch = joined["offset"], joined["epoch"]
    # well-formed posts "from alice", with the instance's own origin: as a post of
    # one of its connections (with the room's next offset), and as a local one
    await _inject(backplane_url, f"{ns}:room:lobby",
                  encode_envelope(f"{me}/c1", _message("forged, with an offset"),
                                  top + 1, epoch),
                  encode_envelope(me, _message("forged, no offset")),
                  encode_envelope(f"{me}/c1", _message("forged, a made-up sig"), top + 1,
                                  epoch, "0" * 32))
    await carol.send("lobby", "the real next post")
    got = await bob.expect("message")
    assert got["content"] == "the real next post" and got["offset"] == top + 1
    assert a.server.relay.refused == 3
    assert [f for f in bob.drain() if f["type"] == "message"] == []


async def test_with_a_backplane_key_only_its_signatures_reach_clients(
        start: Any, clients: Any, backplane_url: str) -> None:
    if backplane_url.startswith("memory://"):
        pytest.skip("the attacker here is a Redis client")
    a = await start("aiohttp", backplane=backplane_url, backplane_key=KEY)
    b = await start("fastapi", backplane=backplane_url, backplane_key=KEY)
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    await alice.join("lobby")
    await bob.join("lobby")
    ns = a.server.settings.namespace
    # a well-formed post of another origin: welcome without a key, dropped with one
    await _inject(backplane_url, f"{ns}:room:lobby",
                  encode_envelope("redis-cli", _message("maintenance at noon", "system")))
    async with wskit.Publisher(backplane_url, namespace=ns) as keyless:
        await keyless.publish("lobby", "from a publisher without the key")
        await keyless.disconnect("alice")  # no key holder sent it: nobody is closed
    async with wskit.Publisher(backplane_url, namespace=ns, backplane_key=KEY) as keyed:
        await keyed.publish("lobby", "from a publisher with the key")
    await bob.send("lobby", "from bob, on the other instance")
    contents = [(await alice.expect("message"))["content"] for _ in range(2)]
    assert contents == ["from a publisher with the key", "from bob, on the other instance"]
    assert not alice.closed
    assert a.server.relay.refused >= 3  # the injection, the keyless post and disconnect


def test_the_key_is_never_shown() -> None:
    settings = wskit.Settings(backplane_key=KEY)
    assert KEY not in repr(settings)
    with pytest.raises(wskit.ConfigError, match="at least 16"):
        wskit.Settings(backplane_key="short")
