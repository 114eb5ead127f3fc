"""Checks for the exercises in notebooks 01, 03, 04, 07 and 08: the reliability
lessons (a broadcast that survives a dead socket, retrying through a backplane
outage, a heartbeat that checks its pongs, backoff with jitter, history to live
without a gap, presence with expiry).

Random cases every run, real sockets where the lesson is about the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import secrets
from collections.abc import Callable
from typing import Any

from ..teaching import ExerciseFailed, attempt, expect, passed, until

__all__ = ["check_dead_socket_broadcast", "check_retry_when_unavailable", "check_pong_watch",
           "check_full_jitter", "check_history_to_live", "check_presence_expiry"]


# -- notebook 01: a broadcast that survives a dead socket --------------------------------

class _Socket:
    """A stand-in for the seed's ``web.WebSocketResponse``: only ``send_json``.

    A dead one raises what aiohttp raises on a closing transport; a slow one
    yields to the loop while sending, which is when another user may join.
    """

    def __init__(self, error: BaseException | None = None,
                 on_send: Callable[[], None] | None = None) -> None:
        self.received: list[Any] = []
        self.error = error
        self.on_send = on_send

    async def send_json(self, data: Any) -> None:
        if self.error is not None:
            raise self.error
        if self.on_send is not None:
            self.on_send()
            await asyncio.sleep(0)
        self.received.append(data)


async def check_dead_socket_broadcast(broadcast_to_room: Callable[..., Any]) -> None:
    """``broadcast_to_room(manager, room_id, message, exclude=None)`` on the seed's manager."""
    import aiohttp

    from ..seed.aiohttp_manager import WebSocketManager

    name = "Exercise 1.1 (a broadcast that survives a dead socket)"
    hint = ("loop over a copy of the room (list(...)): a join or a disconnect during an "
            "`await` changes the set; catch the exception of one send, remember that user, "
            "and after the loop `await manager.disconnect(user)` for each dead one")
    rng = random.Random()
    errors = (lambda: ConnectionResetError("Cannot write to closing transport"),
              lambda: RuntimeError("WebSocket is not connected"),
              lambda: aiohttp.ClientConnectionResetError("Cannot write to closing transport"))
    for round_no in range(20):
        manager = WebSocketManager()
        users = rng.sample([f"user{n}" for n in range(30)], rng.randrange(4, 10))
        room = f"room{round_no}"
        dead = set(rng.sample(users, rng.randrange(1, len(users) - 1)))
        exclude = rng.choice([u for u in users if u not in dead] + [None])
        newcomer = "late-" + secrets.token_hex(2)
        sockets: dict[str, _Socket] = {}

        def join_late(room: str = room) -> None:  # another handler's join, mid-broadcast
            manager.rooms[room].add(newcomer)

        slow = rng.choice([u for u in users if u not in dead and u != exclude])
        for user in users:
            sockets[user] = _Socket(error=rng.choice(errors)() if user in dead else None,
                                    on_send=join_late if user == slow else None)
            await manager.connect(user, sockets[user])
            await manager.join_room(user, room)
            await manager.join_room(user, "elsewhere")
        sockets[newcomer] = _Socket()
        await manager.connect(newcomer, sockets[newcomer])
        message = {"type": "message", "content": secrets.token_hex(4)}
        try:
            result = broadcast_to_room(manager, room, message, exclude)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, 5)
        except NotImplementedError:
            raise ExerciseFailed(name, "not implemented yet", hint) from None
        except Exception as exc:
            raise ExerciseFailed(name, f"the broadcast raised {exc!r} with {len(dead)} dead "
                                 f"socket(s) among {len(users)}", hint) from exc
        for user in users:
            got = sockets[user].received
            want = [] if user in dead or user == exclude else [message]
            expect(name, got == want, f"{user} received {got} (dead: {user in dead}, "
                   f"excluded: {user == exclude}), expected {want}", hint)
        expect(name, sockets[newcomer].received in ([], [message]),
               f"the user who joined during the broadcast got {sockets[newcomer].received}",
               hint)
        for user in dead:
            expect(name, user not in manager.connections
                   and all(user not in members for members in manager.rooms.values()),
                   f"{user}'s socket is dead, yet it is still in the manager "
                   f"(connections or a room): the next broadcast would fail on it again", hint)
        for user in users:
            if user not in dead:
                expect(name, user in manager.connections and user in manager.rooms[room],
                       f"{user} is alive but was removed", "remove only the users whose send "
                       "failed")
    return passed(name, "20 random rooms with dead sockets and a join mid-broadcast")


# -- notebook 03: retry through a backplane outage ----------------------------------------

async def check_retry_when_unavailable(direct_with_retry: Callable[..., Any]) -> None:
    """``direct_with_retry(client, to, content, attempts, base)``: a direct message that
    waits out a backplane outage, and gives up on a user who is simply offline."""
    from ...backplane.fakeserver import FakeRedisServer
    from ...client.aio import Client
    from ...devtools.deploy import IdleRelay
    from ...exceptions import ServerError
    from ...runner.serve import serve

    name = "Exercise 3.1 (retry through backplane_unavailable)"
    hint = ("call client.direct(...) in a loop; catch wskit.ServerError: if its .code is "
            "'backplane_unavailable', wait base * 2 ** attempt (with jitter) and try again; "
            "any other code (user_offline) is an answer: raise it; after `attempts` tries, "
            "raise the last error")
    rng = random.Random()
    me, peer = rng.sample(["alice", "bob", "carol", "dave", "erin"], 2)
    secret = secrets.token_hex(32)
    fake = FakeRedisServer().start()
    # only instance a reaches Redis through this cable; b stays subscribed
    link = IdleRelay((fake.host, fake.port), idle_timeout=None)
    a = b = None
    clients: list[Any] = []
    try:
        await link.start()
        a = await serve("aiohttp", name="exercise-3-1a", backplane=f"redis://{link.address}/0",
                        secret=secret)
        b = await serve("fastapi", name="exercise-3-1b", backplane=fake.url, secret=secret)
        sender = await Client(a, user=me).connect()
        receiver = await Client(b, user=peer).connect()
        clients = [sender, receiver]

        async def call(to: str, content: str, attempts: int) -> Any:
            try:
                result = direct_with_retry(sender, to, content, attempts, 0.05)
                return await asyncio.wait_for(result, 20) if inspect.isawaitable(result) \
                    else result
            except NotImplementedError:
                raise ExerciseFailed(name, "not implemented yet", hint) from None

        content = secrets.token_hex(4)
        reply = await call(peer, content, 5)
        expect(name, isinstance(reply, dict) and reply.get("type") == "sent",
               f"with Redis up, return the server's reply (a 'sent' frame), got {reply!r}", hint)
        expect(name, (await receiver.receive(timeout=3)).get("content") == content,
               f"{peer} did not get the message", hint)

        nobody = "nobody-" + secrets.token_hex(2)
        try:
            got = await call(nobody, "hello?", 4)
        except ServerError as exc:
            expect(name, exc.code == "user_offline", f"for an offline user the error should be "
                   f"user_offline, got {exc.code}", hint)
        except ExerciseFailed:
            raise
        except Exception as exc:
            raise ExerciseFailed(name, f"for an offline user your code raised {exc!r}; let the "
                                 "ServerError (code user_offline) through", hint) from exc
        else:
            raise ExerciseFailed(name, f"a direct to {nobody}, who is offline, returned {got!r}:"
                                 " raise the user_offline error instead", hint)

        for outage in (rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)):
            link.cut()  # instance A loses Redis; B stays subscribed
            content = secrets.token_hex(4)
            task = asyncio.ensure_future(call(peer, content, 12))
            await asyncio.sleep(outage)  # the outage lasts this long
            link.mend()
            try:
                reply = await task
            except ServerError as exc:
                raise ExerciseFailed(name, f"an outage of {outage:.1f} s and you gave up with "
                                     f"{exc.code}: retry while the answer is "
                                     "backplane_unavailable", hint) from exc
            except ExerciseFailed:
                raise
            except Exception as exc:
                raise ExerciseFailed(name, f"during the outage your code raised {exc!r}",
                                     hint) from exc
            expect(name, isinstance(reply, dict) and reply.get("type") == "sent",
                   f"after the outage, return the 'sent' reply, got {reply!r}", hint)
            got = await receiver.receive(timeout=3)
            expect(name, got.get("content") == content,
                   f"{peer} got {got.get('content')!r}, expected {content!r}", hint)
            with contextlib.suppress(asyncio.TimeoutError):
                extra = await receiver.receive(timeout=0.3)
                raise ExerciseFailed(name, f"{peer} got a second frame {extra!r}: "
                                     "send again only when the server said it did not deliver",
                                     hint)
    finally:
        for client in clients:
            await client.close()
        for handle in (a, b):
            if handle is not None:
                await handle.stop()
        await link.stop()
        fake.stop()
    return passed(name, "delivered once through two outages; user_offline not retried")


# -- notebook 04: a heartbeat that checks its pongs -----------------------------------------

def _expected_dead(events: list[tuple[str, float]], timeout: float, now: float) -> bool:
    oldest_unanswered: float | None = None
    for kind, t in events:
        if kind == "ping" and oldest_unanswered is None:
            oldest_unanswered = t
        elif kind == "pong":
            oldest_unanswered = None
    return oldest_unanswered is not None and now - oldest_unanswered > timeout


async def check_pong_watch(watch_class: type) -> None:
    """``PongWatch(timeout)`` with ``ping(now)``, ``pong(now)``, ``dead(now)``: random
    timelines, then live: a real aiohttp server pings two clients through your class
    and must close the one that stopped answering, and only it."""
    from aiohttp import WSMsgType, web

    from ...client.aio import _decode

    name = "Exercise 4.1 (a heartbeat that checks its pongs)"
    hint = ("remember when the oldest unanswered ping was sent (a second ping while one is "
            "unanswered does not move it); a pong answers them all; dead(now) is "
            "now - that time > timeout")
    rng = random.Random()
    for _ in range(100):
        timeout = rng.choice((1.0, 2.0, 5.0))
        watch = attempt(name, hint, watch_class, timeout)
        events: list[tuple[str, float]] = []
        now = 0.0
        for _ in range(rng.randrange(1, 12)):
            now += rng.choice((0.25, 0.75, 1.5, 2.75, 6.25))
            kind = rng.choice(("ping", "ping", "pong", "dead"))
            if kind == "dead":
                want = _expected_dead(events, timeout, now)
                got = attempt(name, hint, watch.dead, now)
                expect(name, got is want, f"timeout {timeout}, after {events}: dead({now}) "
                       f"returned {got!r}, expected {want!r}", hint)
            else:
                attempt(name, hint, getattr(watch, kind), now)
                events.append((kind, now))

    interval, timeout = 0.1, 0.3
    closed: dict[str, float] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        watch = watch_class(timeout)

        async def pinger() -> None:
            while not ws.closed:
                now = loop.time()
                if watch.dead(now):
                    closed[request.query["user"]] = now
                    await ws.close(code=4002, message=b"heartbeat timeout")
                    return
                watch.ping(now)
                await ws.send_json({"type": "ping"})
                await asyncio.sleep(interval)

        task = asyncio.ensure_future(pinger())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and (_decode(msg.data) or {}).get("type") == "pong":
                    watch.pong(loop.time())
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return ws

    import aiohttp

    from ...runner.serve import serve_app

    app = web.Application()
    app.router.add_get("/ws", handler)
    handle = await serve_app(app, name="exercise-4-1")
    port = handle.port
    try:
        async with aiohttp.ClientSession() as session:
            live = await session.ws_connect(f"http://127.0.0.1:{port}/ws?user=live")
            silent = await session.ws_connect(f"http://127.0.0.1:{port}/ws?user=silent")
            started = asyncio.get_running_loop().time()

            async def answer() -> None:
                async for msg in live:
                    if msg.type == WSMsgType.TEXT and "ping" in msg.data:
                        await live.send_json({"type": "pong"})

            answering = asyncio.ensure_future(answer())
            try:
                await until(lambda: "silent" in closed, timeout=5,
                            what="the silent client to be closed")
                took = closed["silent"] - started
                expect(name, took <= interval + timeout + 0.5,
                       f"the silent client was closed only after {took:.2f} s (interval "
                       f"{interval}, timeout {timeout})", hint)
                # the live one keeps answering for several more timeouts
                await asyncio.sleep(3 * timeout)
                expect(name, "live" not in closed,
                       "the client that answered every ping was closed", hint)
            finally:
                answering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answering
                await live.close()
                await silent.close()
    except ExerciseFailed:
        raise
    except Exception as exc:
        raise ExerciseFailed(name, f"live, your class raised {exc!r}", hint) from exc
    finally:
        await handle.stop()
    return passed(name, f"100 random timelines; live: the silent client closed after "
                  f"{took:.2f} s, the answering one kept")

# -- notebook 07: recovery -------------------------------------------------------
def check_full_jitter(backoff_delay: Callable[[int, float, float, Any], float]) -> None:
    """``backoff_delay(attempt, base, cap, rng)``: a full-jitter wait, drawn with ``rng``.

    Random bases, caps and seeds, thousands of draws: a constant, a fixed schedule
    or a jitter that never reaches 0 or the ceiling cannot pass.
    """
    import random

    name = "Exercise 7.1 (backoff with full jitter)"
    hint = ("the wait is rng.uniform(0, min(cap, base * 2 ** attempt)): exponential growth, "
            "capped, and the whole range drawn at random (not a small +-25% around it)")
    checker = random.Random()
    for _ in range(3):
        base, cap = checker.uniform(0.05, 0.5), checker.uniform(2.0, 20.0)
        seed = checker.randrange(1 << 30)
        for attempt_no in range(0, 12, 3):
            ceiling = min(cap, base * 2 ** attempt_no)
            rng = random.Random(seed)
            draws = [attempt(name, hint, backoff_delay, attempt_no, base, cap, rng)
                     for _ in range(2000)]
            expect(name, all(isinstance(d, (int, float)) for d in draws),
                   "return a number of seconds", hint)
            low, high, mean = min(draws), max(draws), sum(draws) / len(draws)
            expect(name, 0 <= low and high <= ceiling + 1e-9,
                   f"attempt {attempt_no} (base {base:.2f}, cap {cap:.1f}): waits must lie in "
                   f"[0, {ceiling:.3f}], got {low:.3f} to {high:.3f}", hint)
            expect(name, low < 0.05 * ceiling and high > 0.95 * ceiling
                   and abs(mean - ceiling / 2) < 0.05 * ceiling,
                   f"attempt {attempt_no}: waits should spread evenly over [0, {ceiling:.3f}] "
                   f"(min {low:.3f}, max {high:.3f}, mean {mean:.3f})", hint)
            replay = attempt(name, hint, backoff_delay, attempt_no, base, cap, random.Random(seed))
            expect(name, replay == draws[0],
                   "draw from the rng you are given, so that a run can be replayed", hint)
    return passed(name, "24,000 draws over random bases, caps and seeds")


def check_history_to_live(merge: Callable[[list[dict[str, Any]], list[dict[str, Any]], int],
                                          list[dict[str, Any]]]) -> None:
    """``merge(replayed, buffered, top)``: what a rejoining client is given, in order.

    ``replayed``: the history read after the client's offset (offsets up to ``top``);
    ``buffered``: live messages that arrived for it meanwhile, some of them also in
    the history. Random cases: no gap, no duplicate, offset order.
    """
    import random

    name = "Exercise 7.2 (history to live without a gap)"
    hint = ("deliver every replayed message, then only the buffered ones whose offset is "
            "above top: the others were already in the history you read")
    rng = random.Random()
    for _ in range(50):
        since = rng.randrange(0, 50)
        top = since + rng.randrange(0, 20)
        last_live = top + rng.randrange(0, 10)
        replayed = [{"offset": o, "content": f"m{o}"} for o in range(since + 1, top + 1)]
        first_buffered = rng.randrange(since + 1, top + 2) if top > since else top + 1
        buffered = [{"offset": o, "content": f"m{o}"} for o in range(first_buffered, last_live + 1)]
        got = attempt(name, hint, merge, [dict(m) for m in replayed],
                      [dict(m) for m in buffered], top)
        want = list(range(since + 1, last_live + 1))
        offsets = [m.get("offset") for m in got] if isinstance(got, list) else got
        expect(name, offsets == want,
               f"since {since}, top {top}, buffered {first_buffered}..{last_live}: delivered "
               f"offsets {offsets}, expected {want}", hint)
    return passed(name, "50 random rejoins: no gap, no duplicate, in order")


# -- notebook 08: presence ---------------------------------------------------------

def check_presence_expiry(alive_users: Callable[[list[tuple[str, str, float]], float],
                                                list[str]]) -> None:
    """``alive_users(entries, now)``: the users present at ``now``.

    ``entries`` are ``(user, instance, expires_at)``; an entry counts while
    ``expires_at > now``; a user is present while any of its entries counts (a
    user with tabs on two instances). Random rooms against wskit's own store:
    a fixed list, ignoring expiry, or counting entries instead of users fails.
    """
    import random

    from ...server.presence import MemoryPresence

    name = "Exercise 8.1 (presence with expiry)"
    hint = ("keep the entries whose expires_at is after now, then the distinct users of "
            "those, sorted: one live entry (any instance) is enough")
    rng = random.Random()
    for _ in range(200):
        now = rng.uniform(100, 1000)
        pairs = {(f"u{rng.randrange(6)}", f"i{rng.randrange(3)}") for _ in range(rng.randrange(12))}
        entries = [(u, i, now + rng.uniform(-30, 30)) for u, i in sorted(pairs)]
        rng.shuffle(entries)
        store = MemoryPresence(clock=lambda: now)  # wskit's own store, same room
        for user, instance, expires in entries:
            store._rooms.setdefault("r", {})[(user, instance)] = expires
        want = store.users("r")
        got = attempt(name, hint, alive_users, list(entries), now)
        expect(name, isinstance(got, list), f"return a list, got {type(got).__name__}", hint)
        expect(name, got == want, f"at now={now:.1f} with {len(entries)} entries you said "
               f"{got}, the present users are {want}", hint)
    return passed(name, "200 random rooms agree with wskit's presence store")
