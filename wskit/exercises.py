"""Checks for notebook 05's exercises. Each fails with a hint until the work is done.

The checks use real servers and clients where the exercise is about the wire,
and plain calls where it is about logic, like the rest of wskit.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
from typing import Any, Callable

from .client import Client
from .protocol import error_frame
from .runner import serve
from .server import ChatServer
from .teaching import ExerciseFailed, attempt, expect, passed

__all__ = ["check_presence_expiry", "check_slash_commands", "check_private_messages", "check_typing_tracker",
           "check_rate_limiter", "check_members_across_instances", "check_full_jitter",
           "check_history_to_live"]


# -- 1. slash commands --------------------------------------------------------

def check_slash_commands(parse_command: Callable[[str, str], dict[str, Any]]) -> None:
    name = "Exercise 1 (slash commands)"
    hint = ("split the text once on whitespace: '/join lobby' -> "
            '{"type": "join", "roomId": "lobby"}; anything not starting with "/" is a '
            "message to the current room")
    cases = [
        (("/join games", "lobby"), {"type": "join", "roomId": "games"}),
        (("/leave lobby", "lobby"), {"type": "leave", "roomId": "lobby"}),
        (("/msg bob see you at 5", "lobby"), {"type": "direct", "to": "bob",
                                              "content": "see you at 5"}),
        (("hello  world", "lobby"), {"type": "message", "roomId": "lobby",
                                     "content": "hello  world"}),
    ]
    for args, want in cases:
        got = attempt(name, hint, parse_command, *args)
        expect(name, got == want, f"parse_command{args!r} returned {got!r}, expected {want!r}",
               hint)
    got = attempt(name, hint, parse_command, "/dance", "lobby")
    expect(name, got is None, f"an unknown command should give None, got {got!r}",
           "return None for a command you do not know, so the page can say so")
    return passed(name, f"{len(cases) + 1} cases")


# -- 2. private messages -------------------------------------------------------

async def check_private_messages(transcript: Callable[[list[dict[str, Any]], str, str], list[str]]
                                 ) -> None:
    """A real server; alice and bob exchange direct messages; your transcript must match."""
    name = "Exercise 2 (private messages)"
    hint = ('keep frames whose type is "direct" and that are between the two users, in order; '
            "format each as 'FROM -> TO: CONTENT'")
    secret = secrets.token_hex(32)
    handle = await serve("aiohttp", name="exercise-2", backplane="none", secret=secret)
    try:
        alice = await Client(handle, user="alice").connect()
        bob = await Client(handle, user="bob").connect()
        carol = await Client(handle, user="carol").connect()
        try:
            await alice.join("lobby")
            await bob.join("lobby")
            await bob.direct("alice", "hi alice")
            await carol.direct("alice", "not part of it")
            await bob.send("lobby", "public")
            await alice.direct("bob", "hi bob")
            await bob.direct("alice", "bye")
            frames = [await alice.receive() for _ in range(4)]
        finally:
            for c in (alice, bob, carol):
                await c.close()
    finally:
        await handle.stop()
    want = ["bob -> alice: hi alice", "bob -> alice: bye"]
    got = attempt(name, hint, transcript, frames, "alice", "bob")
    expect(name, got == want, f"transcript returned {got!r}, expected {want!r}", hint)
    return passed(name, "the conversation between alice and bob, from real frames")


# -- 3. typing indicator -------------------------------------------------------

def check_typing_tracker(tracker_class: type) -> None:
    name = "Exercise 3 (typing indicator)"
    hint = ("remember per (user, room) when you last announced and when the user last typed; "
            "announce again only after `throttle` seconds; expire after `expiry` seconds")
    tracker = attempt(name, hint, tracker_class, 2.0, 5.0)
    timeline = [(0.0, True), (0.5, False), (1.9, False), (2.0, True), (2.1, False)]
    for now, want in timeline:
        got = attempt(name, hint, tracker.typed, "alice", "lobby", now)
        expect(name, got is want,
               f"typed('alice', 'lobby', {now}) returned {got!r}, expected {want!r}", hint)
    expect(name, attempt(name, hint, tracker.typed, "bob", "lobby", 2.1) is True,
           "another user typing is a new indicator", "keep state per (user, room)")
    got = attempt(name, hint, tracker.expired, 6.5)
    expect(name, list(got) == [],
           f"expired(6.5) returned {got!r}: both last typed at 2.1, so until 7.1 they are "
           "still typing", hint)
    got = attempt(name, hint, tracker.expired, 7.2)
    expect(name, sorted(got) == [("alice", "lobby"), ("bob", "lobby")],
           f"expired(7.2) returned {got!r}, expected both (they last typed at 2.1)", hint)
    again = attempt(name, hint, tracker.expired, 7.3)
    expect(name, list(again) == [], f"expired users must be forgotten, got {again!r}", hint)
    return passed(name, "throttled announcements and expiry")


# -- 4. rate limit -------------------------------------------------------------

async def check_rate_limiter(limiter_class: type) -> None:
    """The logic on a clock you control, then live: a spammer is limited, others are not."""
    name = "Exercise 4 (rate limit)"
    hint = ("a token bucket: each user starts with `burst` tokens, gains `rate` per second up "
            "to `burst`, and spends one per message; no token, no message")
    limiter = attempt(name, hint, limiter_class, 2.0, 3)
    got = [attempt(name, hint, limiter.allow, "u", 0.0) for _ in range(4)]
    expect(name, got == [True, True, True, False], f"a burst of 4 at t=0 gave {got}", hint)
    expect(name, attempt(name, hint, limiter.allow, "u", 0.5) is True,
           "after 0.5 s at 2/s one token is back", hint)
    expect(name, attempt(name, hint, limiter.allow, "other", 0.5) is True,
           "another user has a bucket of its own", "keep one bucket per user")
    expect(name, attempt(name, hint, limiter.allow, "u", 100.0) is True and
           [limiter.allow("u", 100.0) for _ in range(3)] == [True, True, False],
           "the bucket must not fill beyond `burst`", hint)

    class LimitedServer(ChatServer):
        """wskit with the learner's limiter in front of every frame."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.limiter = limiter_class(5.0, 3)

        async def handle_text(self, conn: Any, text: str) -> None:
            if not self.limiter.allow(conn.user, asyncio.get_running_loop().time()):
                conn.deliver(error_frame("rate_limited", "slow down"))
                return
            await super().handle_text(conn, text)

    handle = await serve("fastapi", name="exercise-4", server=LimitedServer(
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
    return passed(name, f"live: {limited}/10 spam frames refused, the calm user unaffected")


# -- 5. member list across instances --------------------------------------------

async def check_members_across_instances(announce: Callable[..., Any],
                                         room_members: Callable[..., Any]) -> None:
    """Two instances (aiohttp, FastAPI) on one fakeredis; the member list is their union."""
    import fakeredis

    from .backplane import shared_fake_server

    name = "Exercise 5 (members across instances)"
    hint = ("store each instance's members under one Redis hash per room "
            "(HSET NS:members:ROOM INSTANCE <json list>), and union all fields' lists")
    url = f"fakeredis://exercise-5-{secrets.token_hex(3)}"
    redis = fakeredis.FakeAsyncRedis(server=shared_fake_server(url[len('fakeredis://'):]),
                                     decode_responses=True)
    secret = secrets.token_hex(32)
    a = await serve("aiohttp", name="exercise-5a", backplane=url, secret=secret)
    b = await serve("fastapi", name="exercise-5b", backplane=url, secret=secret)
    clients = []
    try:
        for handle, user in ((a, "alice"), (a, "bob"), (b, "carol"), (b, "alice")):
            client = await Client(handle, user=user).connect()
            clients.append(client)
            await client.join("lobby")
        for handle in (a, b):
            server = handle.server
            assert server is not None
            result = attempt(name, hint, announce, redis, server.settings.namespace, "lobby",
                             server.instance_id, server.hub.members("lobby"))
            if inspect.isawaitable(result):
                await result
        assert a.server is not None
        result = attempt(name, hint, room_members, redis, a.server.settings.namespace, "lobby")
        got = await result if inspect.isawaitable(result) else result
    except NotImplementedError:
        raise ExerciseFailed(name, "not implemented yet", hint) from None
    finally:
        for client in clients:
            await client.close()
        await a.stop()
        await b.stop()
        await redis.aclose()
    want = ["alice", "bob", "carol"]
    expect(name, sorted(got or []) == want,
           f"room_members returned {got!r}, expected {want} (alice is on both instances)", hint)
    return passed(name, "alice, bob and carol, from two instances, alice once")



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

    from .presence import MemoryPresence

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
