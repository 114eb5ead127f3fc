"""The wanted-set-plus-one-worker helper, specified without sockets.

A toy backend records every call; it can be held (a slow round trip), made
unreachable (it then applies nothing), or "dropped" (it loses everything, as a
Redis connection loses its subscriptions).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from wskit.backplane.reconcile import Reconciler

pytestmark = pytest.mark.timeout(20)


class Backend:
    def __init__(self) -> None:
        self.held: set[str] = set()
        self.calls: list[list[tuple[str, bool]]] = []
        self.up = True
        self.gate: asyncio.Event | None = None
        self.drops = 0

    async def apply(self, changes: list[tuple[str, bool]]) -> int:
        self.calls.append(list(changes))
        drops = self.drops
        if self.gate is not None:
            await self.gate.wait()
        if not self.up or drops != self.drops:
            return 0  # unreachable (or the connection died during the call)
        for key, on in changes:
            (self.held.add if on else self.held.discard)(key)
        return len(changes)


async def test_intents_are_recorded_at_once_and_applied_in_one_batch() -> None:
    backend = Backend()
    r: Reconciler[str] = Reconciler(backend.apply, name="t", eager=False)
    r.want("a")
    r.want("b")
    r.want("c")
    r.unwant("b")  # wanted and unwanted before anything ran: never applied
    assert r.wanted == {"a", "c"} and backend.calls == []
    await r.settle()
    assert backend.calls == [[("a", True), ("c", True)]]
    assert r.applied == backend.held == {"a", "c"} and not r.pending


async def test_a_change_during_a_call_is_applied_after_it_by_the_same_worker() -> None:
    backend = Backend()
    backend.gate = asyncio.Event()
    r: Reconciler[str] = Reconciler(backend.apply, name="t", eager=False)
    r.want("a")
    settling = asyncio.ensure_future(r.settle())
    while not backend.calls:
        await asyncio.sleep(0)  # until the worker is inside apply (a yield, not a wait)
    r.unwant("a")  # the "leave" of a close, while the "join" is in flight
    r.want("b")
    second = asyncio.ensure_future(r.settle())  # returns only when both are done
    backend.gate.set()
    await asyncio.wait_for(asyncio.gather(settling, second), 5)
    assert backend.calls == [[("a", True)], [("a", False), ("b", True)]]
    assert backend.held == r.applied == {"b"}


async def test_an_unreachable_backend_keeps_the_intents_until_a_retry() -> None:
    backend = Backend()
    backend.up = False
    r: Reconciler[str] = Reconciler(backend.apply, name="t")  # eager: starts by itself
    r.want("a")
    await r.idle()
    assert backend.calls == [[("a", True)]] and r.applied == set() and r.pending
    await r.settle()  # tries again, fails again, never raises
    assert r.pending
    backend.up = True
    r.retry()
    await r.idle()
    assert backend.held == r.applied == {"a"} and not r.pending


async def test_reset_disregards_a_call_begun_before_it_and_applies_everything_again() -> None:
    backend = Backend()
    r: Reconciler[str] = Reconciler(backend.apply, name="t", eager=False)
    r.want("a")
    await r.settle()
    backend.gate = asyncio.Event()
    r.want("b")
    settling = asyncio.ensure_future(r.settle())
    while len(backend.calls) < 2:
        await asyncio.sleep(0)
    backend.drops += 1  # the connection dropped: the backend holds nothing now
    backend.held.clear()
    r.reset(set())
    backend.gate.set()
    await asyncio.wait_for(settling, 5)
    assert backend.held == r.applied == {"a", "b"}


async def test_one_at_a_time_skips_what_is_no_longer_wanted_when_its_turn_comes() -> None:
    backend = Backend()
    backend.gate = asyncio.Event()
    r: Reconciler[str] = Reconciler(backend.apply, name="t", batch=False)
    r.want("a")
    r.want("b")
    while not backend.calls:
        await asyncio.sleep(0)
    r.unwant("b")  # before its turn: no join then leave, nothing at all
    backend.gate.set()
    await asyncio.wait_for(r.idle(), 5)
    assert backend.calls == [[("a", True)]] and backend.held == {"a"}


async def test_pause_records_and_resume_applies() -> None:
    backend = Backend()
    r: Reconciler[str] = Reconciler(backend.apply, name="t")
    r.pause()
    r.want("a")
    await r.idle()
    assert backend.calls == [] and r.pending
    r.resume()
    await r.settle()
    assert backend.held == {"a"}


@pytest.mark.parametrize("seed", range(20))
async def test_at_quiescence_the_backend_holds_exactly_what_is_wanted(seed: int) -> None:
    rnd = random.Random(seed)
    backend = Backend()
    r: Reconciler[str] = Reconciler(backend.apply, name="t", batch=rnd.random() < 0.5,
                                    eager=rnd.random() < 0.5)
    keys = "abcde"
    for _ in range(200):
        op = rnd.choice(("want", "want", "unwant", "unwant", "settle", "down", "up",
                         "drop", "hold", "release", "yield"))
        if op == "want":
            r.want(rnd.choice(keys))
        elif op == "unwant":
            r.unwant(rnd.choice(keys))
        elif op == "settle":
            r.retry()
        elif op == "down":
            backend.up = False
        elif op == "up":
            backend.up = True
        elif op == "drop":
            backend.drops += 1
            backend.held.clear()
            r.reset(set())
        elif op == "hold" and backend.gate is None:
            backend.gate = asyncio.Event()
        elif op == "release" and backend.gate is not None:
            backend.gate.set()
            backend.gate = None
        for _ in range(rnd.randrange(3)):
            await asyncio.sleep(0)  # a random interleaving, not synchronisation
    if backend.gate is not None:
        backend.gate.set()
    backend.up = True
    await asyncio.wait_for(r.settle(), 5)
    await asyncio.wait_for(r.settle(), 5)  # a worker that began before "up" gave up
    assert backend.held == r.applied == r.wanted, seed
    assert not r.pending
    await r.stop()
