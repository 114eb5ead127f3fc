"""Checks for notebook 05: extending the chat (slash commands, private messages,
typing, a rate limit, members across instances).

Every check draws fresh random cases (rooms, users, contents, clocks), so an
answer that returns what a previous run expected cannot pass; where the task
is stateful, the state is checked too (exercise 5.5 looks into Redis).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable
from typing import Any

from ...client.aio import Client
from ...core.protocol import error_frame
from ...runner.serve import serve
from ...server.chat import ChatServer
from ..teaching import ExerciseFailed, attempt, expect, passed, settle, until

__all__ = ["check_slash_commands", "check_private_messages", "check_typing_tracker",
           "check_rate_limiter", "check_members_across_instances"]

_WORDS = ("lobby", "games", "music", "news", "help", "tea", "rust", "jazz", "maths", "chess")
_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) + str(rng.randrange(100)) for _ in range(n))


# -- 5.1 slash commands ----------------------------------------------------------

def check_slash_commands(parse_command: Callable[[str, str], dict[str, Any]]) -> None:
    name = "Exercise 5.1 (slash commands)"
    hint = ("split the text once on whitespace: '/join lobby' -> "
            '{"type": "join", "roomId": "lobby"}; anything not starting with "/" is a '
            "message to the current room")
    rng = random.Random()
    cases: list[tuple[tuple[str, str], Any]] = []
    for _ in range(8):
        room, here = _words(rng, 1), _words(rng, 1)
        to, content = rng.choice(_USERS), _words(rng, rng.randrange(1, 5))
        spaced = content.replace(" ", "  ", 1)  # the content is kept as typed
        cases += [
            ((f"/join {room}", here), {"type": "join", "roomId": room}),
            ((f"/leave {room}", here), {"type": "leave", "roomId": room}),
            ((f"/msg {to} {spaced}", here), {"type": "direct", "to": to, "content": spaced}),
            ((spaced, here), {"type": "message", "roomId": here, "content": spaced}),
            ((f"/{rng.choice(('dance', 'nick', 'shrug'))} {content}", here), None),
        ]
    rng.shuffle(cases)
    for args, want in cases:
        got = attempt(name, hint, parse_command, *args)
        expect(name, got == want, f"parse_command{args!r} returned {got!r}, expected {want!r}",
               hint if want is not None else
               "return None for a command you do not know, so the page can say so")
    return passed(name, f"{len(cases)} random lines")


# -- 5.2 private messages ----------------------------------------------------------

async def check_private_messages(transcript: Callable[[list[dict[str, Any]], str, str], list[str]]
                                 ) -> None:
    """A real server; random users exchange direct messages; your transcript must match."""
    name = "Exercise 5.2 (private messages)"
    hint = ('keep frames whose type is "direct" and that are between the two users, in order; '
            "format each as 'FROM -> TO: CONTENT'")
    rng = random.Random()
    me, other, third = rng.sample(_USERS, 3)
    handle = await serve("aiohttp", name="exercise-5-2", backplane="none",
                         secret=secrets.token_hex(32))
    want: list[str] = []
    try:
        clients = {u: await Client(handle, user=u).connect() for u in (me, other, third)}
        try:
            for u in clients.values():
                await u.join("lobby")
            for _ in range(rng.randrange(3, 7)):
                sender, to = rng.choice([(other, me), (me, other), (third, me)])
                content = _words(rng, rng.randrange(1, 4))
                await clients[sender].direct(to, content)
                if sender == other:  # the sending connection itself gets no copy
                    want.append(f"{sender} -> {to}: {content}")
                await clients[other].send("lobby", "public " + content)
            end = "bye " + secrets.token_hex(3)
            await clients[other].direct(me, end)
            want.append(f"{other} -> {me}: {end}")
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1].get("content") != end:
                frames.append(await clients[me].receive())
        finally:
            for c in clients.values():
                await c.close()
    finally:
        await handle.stop()
    got = attempt(name, hint, transcript, frames, me, other)
    expect(name, got == want, f"transcript(frames, {me!r}, {other!r}) returned {got!r}, "
           f"expected {want!r}", hint)
    return passed(name, f"the conversation between {me} and {other}, from real frames")


# -- 5.3 typing indicator -----------------------------------------------------------

def check_typing_tracker(tracker_class: type) -> None:
    """Random keystroke timelines against the rules stated in the notebook."""
    name = "Exercise 5.3 (typing indicator)"
    hint = ("remember per (user, room) when you last announced and when the user last typed; "
            "announce again only after `throttle` seconds; expire after `expiry` seconds")
    rng = random.Random()
    for _ in range(20):
        throttle, expiry = rng.choice((1.0, 2.0, 3.0)), rng.choice((5.0, 8.0))
        tracker = attempt(name, hint, tracker_class, throttle, expiry)
        announced: dict[tuple[str, str], float] = {}
        typed: dict[tuple[str, str], float] = {}
        now = 0.0
        for _ in range(30):
            now += rng.choice((0.25, 0.5, 0.75, 1.25, 2.5, 6.25))  # never on a boundary
            if rng.random() < 0.2:
                gone = sorted(k for k, t in typed.items() if now - t >= expiry)
                got = attempt(name, hint, tracker.expired, now)
                expect(name, sorted(got or []) == gone,
                       f"throttle {throttle}, expiry {expiry}: expired({now}) returned {got!r}, "
                       f"expected {gone!r}", hint)
                for k in gone:
                    typed.pop(k)
                    announced.pop(k, None)
                continue
            key = (rng.choice(_USERS[:3]), rng.choice(_WORDS[:2]))
            want = key not in announced or now - announced[key] >= throttle
            typed[key] = now
            if want:
                announced[key] = now
            got = attempt(name, hint, tracker.typed, *key, now)
            expect(name, got is want, f"throttle {throttle}: typed{key + (now,)!r} returned "
                   f"{got!r}, expected {want!r}", hint)
    return passed(name, "20 random timelines of keystrokes and expiries")


# -- 5.4 rate limit -----------------------------------------------------------------

async def check_rate_limiter(limiter_class: type) -> None:
    """The logic on a clock you control, then live: a spammer is limited, others are not."""
    name = "Exercise 5.4 (rate limit)"
    hint = ("a token bucket: each user starts with `burst` tokens, gains `rate` per second up "
            "to `burst`, and spends one per message; no token, no message")
    rng = random.Random()
    for _ in range(10):
        rate, burst = rng.choice((0.5, 1.0, 2.0, 4.0)), rng.randrange(1, 6)
        limiter = attempt(name, hint, limiter_class, rate, burst)
        got = [attempt(name, hint, limiter.allow, "u", 0.0) for _ in range(burst + 2)]
        want = [True] * burst + [False, False]
        expect(name, got == want, f"rate {rate}, burst {burst}: {burst + 2} frames at t=0 "
               f"gave {got}", hint)
        expect(name, attempt(name, hint, limiter.allow, "other", 0.0) is True,
               "another user has a bucket of its own", "keep one bucket per user")
        back = 1.0 / rate  # one token back
        got = [attempt(name, hint, limiter.allow, "u", back * 1.01) for _ in range(2)]
        expect(name, got == [True, False], f"rate {rate}: after {back * 1.01:.2f} s one token "
               f"is back, so [True, False], got {got}", hint)
        later = 1000.0
        got = [attempt(name, hint, limiter.allow, "u", later) for _ in range(burst + 1)]
        expect(name, got == [True] * burst + [False],
               f"burst {burst}: after a long pause the bucket holds {burst} tokens, not more; "
               f"got {got}", hint)

    class LimitedServer(ChatServer):
        """wskit with the learner's limiter in front of every frame."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.limiter = limiter_class(5.0, 3)

        async def handle_text(self, conn: Any, text: str) -> None:
            allowed = attempt(name, hint, self.limiter.allow, conn.user,
                              asyncio.get_running_loop().time())
            if not allowed:
                conn.deliver(error_frame("rate_limited", "slow down"))
                return
            await super().handle_text(conn, text)

    handle = await serve("fastapi", name="exercise-5-4", server=LimitedServer(
        backplane="none", secret=secrets.token_hex(32)))
    try:
        spammer = await Client(handle, user="spammer").connect()
        calm = await Client(handle, user="calm").connect()
        try:
            await spammer.join("r")
            await calm.join("r")
            for i in range(10):
                await spammer.send_raw({"type": "message", "roomId": "r", "content": str(i)})
            limited = 0
            for _ in range(10):
                frame = await spammer.receive()
                limited += frame.get("code") == "rate_limited"
            await calm.send("r", "I am fine")
        finally:
            await spammer.close()
            await calm.close()
    finally:
        await handle.stop()
    expect(name, limited >= 7, f"the spammer was limited only {limited} times out of 10", hint)
    return passed(name, f"10 random buckets; live: {limited}/10 spam frames refused, "
                  "the calm user unaffected")


# -- 5.5 member list across instances --------------------------------------------------

async def check_members_across_instances(announce: Callable[..., Any],
                                         room_members: Callable[..., Any]) -> None:
    """Two instances (aiohttp, FastAPI) on one fakeredis; the member list is their union,
    kept in Redis with an expiry, so a crashed instance's members disappear."""
    import fakeredis

    from ...backplane import shared_fake_server

    name = "Exercise 5.5 (members across instances)"
    hint = ("one key per room and instance, with an expiry: SET NS:members:ROOM:INSTANCE "
            "<json list> EX ttl; room_members reads every NS:members:ROOM:* key and unions "
            "the lists")
    rng = random.Random()
    on_a = set(rng.sample(_USERS, 3))
    on_b = set(rng.sample(_USERS, 3))  # may overlap: a user with a tab on each
    url = f"fakeredis://exercise-5-5-{secrets.token_hex(3)}"
    redis = fakeredis.FakeAsyncRedis(server=shared_fake_server(url[len('fakeredis://'):]),
                                     decode_responses=True)
    secret = secrets.token_hex(32)
    a = await serve("aiohttp", name="exercise-5-5a", backplane=url, secret=secret)
    b = await serve("fastapi", name="exercise-5-5b", backplane=url, secret=secret)
    clients = []
    room = rng.choice(_WORDS)
    try:
        for handle, users in ((a, on_a), (b, on_b)):
            for user in sorted(users):
                client = await Client(handle, user=user).connect()
                clients.append(client)
                await client.join(room)
        assert a.server is not None and b.server is not None
        ns = a.server.settings.namespace
        before = set(await redis.keys("*"))
        for handle, ttl in ((a, 30), (b, 1)):  # B is about to "crash": a short expiry
            server = handle.server
            assert server is not None
            await settle(name, hint, attempt(name, hint, announce, redis, ns, room, server.instance_id,
                                  sorted(server.hub.members(room)), ttl))
        written = sorted(set(await redis.keys("*")) - before)
        expect(name, bool(written), "announce wrote nothing to Redis", hint)
        ttls = {key: await redis.ttl(key) for key in written}
        expect(name, all(t > 0 for t in ttls.values()),
               f"every key announce writes needs an expiry (TTL), got {ttls}: without one, a "
               "crashed instance's members stay listed forever", hint)
        got = await settle(name, hint, attempt(name, hint, room_members, redis, ns, room))
        want = sorted(on_a | on_b)
        expect(name, sorted(got or []) == want,
               f"room_members returned {got!r}, expected {want} (each user once)", hint)
        short = [k for k, t in ttls.items() if t <= 1]

        async def expired() -> bool:
            return not short or await redis.exists(*short) == 0

        try:
            await until(expired, timeout=5, what="instance B's announcement to expire")
        except TimeoutError:
            raise ExerciseFailed(name, f"announce(..., ttl=1) wrote keys that did not expire "
                                 f"within 5 s: {short}", hint) from None
        got = await settle(name, hint, attempt(name, hint, room_members, redis, ns, room))
        expect(name, sorted(got or []) == sorted(on_a),
               f"instance B stopped announcing (its ttl was 1 s) and its keys expired; "
               f"room_members returned {got!r}, expected {sorted(on_a)}", hint)
    except NotImplementedError:
        raise ExerciseFailed(name, "not implemented yet", hint) from None
    finally:
        for client in clients:
            await client.close()
        await a.stop()
        await b.stop()
        await redis.aclose()
    return passed(name, f"{len(on_a | on_b)} random users on two instances, in Redis with an "
                  "expiry; the crashed instance's users gone after it")
