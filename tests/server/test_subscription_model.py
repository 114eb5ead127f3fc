"""Model-based test of backplane subscriptions.

Random interleavings of join, leave, close, new connection, a backplane drop and
its reconnection, with subscription changes held at a gate and released at
random moments. At quiescence the channels the backend has are exactly the
rooms and users with local connections: no room with members goes deaf, no
empty room stays subscribed.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from wskit import ChatServer
from wskit.core.protocol import CloseCode
from wskit.testing.memory import GatedBackplane, Peer

USERS = ("ann", "bob", "cy", "dee")
ROOMS = ("r1", "r2", "r3")


async def _run(seed: int, steps: int) -> None:
    rnd = random.Random(seed)
    bp = GatedBackplane()
    server = ChatServer(backplane=bp, ping_interval=None, ping_timeout=None)
    await server.start()
    peers: list[Peer] = []
    try:
        for _ in range(steps):
            live = [p for p in peers if p.task is not None and not p.task.done()
                    and not p.transport.closed.is_set()]
            op = rnd.choice(("connect", "join", "join", "leave", "close", "leave_all",
                             "hold", "release", "drop", "restore", "yield"))
            if op == "connect" or not live:
                p = Peer(server, rnd.choice(USERS))
                p.start()  # no waiting for the welcome: interleaves with the rest
                peers.append(p)
            elif op == "join":
                rnd.choice(live).send({"type": "join", "roomId": rnd.choice(ROOMS)})
            elif op == "leave":
                rnd.choice(live).send({"type": "leave", "roomId": rnd.choice(ROOMS)})
            elif op == "close":
                victim = rnd.choice(live)
                try:
                    victim.conn.close_soon(CloseCode.NORMAL)
                except LookupError:  # not registered yet: the client leaves instead
                    victim.send(None)
            elif op == "leave_all":
                rnd.choice(live).send(None)  # the client closes
            elif op == "hold":
                bp.hold("apply")
            elif op == "release":
                bp.open("apply")
            elif op == "drop":
                bp.drop()
            elif op == "restore" and not bp.up:
                bp.open("apply")
                await bp.restore()
            for _ in range(rnd.randrange(4)):
                await asyncio.sleep(0)  # a random interleaving, not synchronisation
        # quiescence: gates open, the bus back, every queued frame answered
        bp.open("apply")
        if not bp.up:
            await bp.restore()
        for p in peers:
            if p.task is not None and not p.task.done() and not p.transport.closed.is_set():
                p.send({"type": "ping", "ref": "fence"})
        for p in peers:
            if p.task is not None and not p.task.done():
                try:
                    await _fence(p)
                except ConnectionError:
                    pass
        await server.settled()
        relay = server.relay
        assert relay is not None
        want = ({relay.room_channel(r) for r in server.hub.rooms()}
                | {relay.user_channel(u) for u in server.hub.users()})
        assert bp.channels == want, seed
        assert bp.subscribed == want, seed
    finally:
        bp.open("apply")
        await server.stop()
        for p in peers:
            if p.task is not None:
                await asyncio.wait({p.task}, timeout=5)


async def _fence(p: Peer) -> None:
    while True:
        frame = await p.recv(timeout=5)
        if frame.get("ref") == "fence":
            return


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(40))
async def test_subscriptions_match_local_members_at_quiescence(seed: int) -> None:
    await _run(seed, steps=300)
