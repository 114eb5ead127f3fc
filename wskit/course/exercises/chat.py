"""Checks for notebook 05: extending the chat (slash commands, private messages,
typing, a rate limit, members across instances).

Each check is written against a :class:`~wskit.course.learner.Learner` and an
``rng``: it draws the cases, computes what is expected itself, and compares plain
values only (:func:`~wskit.course.teaching.same`), so it runs unchanged in the
notebook and in the grader, where the learner's code lives in a sandbox. Where
the task is stateful, the state is looked at too (5.5 looks into Redis).
"""

from __future__ import annotations

import random
import secrets
from typing import Any

from ..learner import Learner, observe, same
from ..teaching import attempt, expect, passed

__all__ = ["slash_commands", "private_messages", "typing_tracker", "rate_limiter",
           "members_across_instances", "reference_bucket"]

_WORDS = ("lobby", "games", "music", "news", "help", "tea", "rust", "jazz", "maths", "chess")
_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) + str(rng.randrange(100)) for _ in range(n))


# -- 5.1 slash commands ----------------------------------------------------------

def slash_commands(learner: Learner, rng: random.Random) -> None:
    name = "Exercise 5.1 (slash commands)"
    hint = ("split the text once on whitespace: '/join lobby' -> "
            '{"type": "join", "roomId": "lobby"}; anything not starting with "/" is a '
            "message to the current room")
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
        got = attempt(name, hint, learner.call, "parse_command", *args)
        expect(name, same(got, want), f"parse_command{args!r} returned {got!r}, expected "
               f"{want!r}", hint if want is not None else
               "return None for a command you do not know, so the page can say so")
    return passed(name, f"{len(cases)} random lines")


# -- 5.2 private messages ----------------------------------------------------------

async def private_messages(learner: Learner, rng: random.Random) -> None:
    """A real server (run by the check: no learner code in it); random users exchange
    direct messages; the learner's transcript of the frames must match the script."""
    from ...client.aio import Client
    from ...runner.serve import serve

    name = "Exercise 5.2 (private messages)"
    hint = ('keep frames whose type is "direct" and that are between the two users, in order; '
            "format each as 'FROM -> TO: CONTENT'")
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
            end = f"bye {rng.getrandbits(24):06x}"
            await clients[other].direct(me, end)
            want.append(f"{other} -> {me}: {end}")
            frames: list[dict[str, Any]] = []
            while not frames or frames[-1].get("content") != end:
                frames.append(await clients[me].receive(timeout=10))
        finally:
            for c in clients.values():
                await c.close()
    finally:
        await handle.stop()
    got = attempt(name, hint, learner.call, "transcript", frames, me, other)
    expect(name, same(got, want), f"transcript(frames, {me!r}, {other!r}) returned {got!r}, "
           f"expected {want!r}", hint)
    return passed(name, f"the conversation between {me} and {other}, from real frames")


# -- 5.3 typing indicator -----------------------------------------------------------

def typing_tracker(learner: Learner, rng: random.Random) -> None:
    """Random keystroke timelines against the rules stated in the notebook."""
    name = "Exercise 5.3 (typing indicator)"
    hint = ("remember per (user, room) when you last announced and when the user last typed; "
            "announce again only after `throttle` seconds; expire after `expiry` seconds")
    for _ in range(20):
        throttle, expiry = rng.choice((1.0, 2.0, 3.0)), rng.choice((5.0, 8.0))
        tracker = attempt(name, hint, learner.new, "TypingTracker", throttle, expiry)
        announced: dict[tuple[str, str], float] = {}
        typed: dict[tuple[str, str], float] = {}
        now = 0.0
        for _ in range(30):
            now += rng.choice((0.25, 0.5, 0.75, 1.25, 2.5, 6.25))  # never on a boundary
            if rng.random() < 0.2:
                gone = sorted(k for k, t in typed.items() if now - t >= expiry)
                got = attempt(name, hint, tracker.expired, now)
                pairs = got if type(got) is list and all(
                    type(k) is list and len(k) == 2 and all(type(x) is str for x in k)
                    for k in got) else None
                expect(name, pairs is not None and sorted(tuple(k) for k in pairs) == gone,
                       f"throttle {throttle}, expiry {expiry}: expired({now}) returned {got!r}, "
                       f"expected {[list(k) for k in gone]!r}", hint)
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

def reference_bucket(rate: float, burst: int, times: list[float]) -> list[bool]:
    """The token bucket the exercise asks for, for one user: full at first, refilled
    continuously (fractions kept), capped at ``burst``, one token per frame."""
    tokens, when, out = float(burst), times[0] if times else 0.0, []
    for now in times:
        tokens = min(float(burst), tokens + (now - when) * rate)
        when = now
        out.append(tokens >= 1)
        if tokens >= 1:
            tokens -= 1
    return out


async def rate_limiter(learner: Learner, rng: random.Random) -> None:
    """The logic on a clock the check controls (fractional refills included), then
    live: a spammer is limited, others are not."""
    name = "Exercise 5.4 (rate limit)"
    hint = ("a token bucket: each user starts with `burst` tokens, gains `rate` per second up "
            "to `burst` (fractions count: half a second at 1/s is half a token), and spends "
            "one per message; no token, no message")

    def play(rate: float, burst: int, times: list[float], what: str) -> None:
        limiter = attempt(name, hint, learner.new, "RateLimiter", rate, burst)
        got = [attempt(name, hint, limiter.allow, "u", t) for t in times]
        want = reference_bucket(rate, burst, times)
        expect(name, same(got, want), f"rate {rate}/s, burst {burst}, {what}: you allowed "
               f"{sum(g is True for g in got)} of {len(times)} ({got}), a token bucket "
               f"allows {sum(want)} ({want})", hint)

    play(1.0, 1, [round(0.9 * k, 1) for k in range(11)], "a frame every 0.9 s")
    for _ in range(12):
        rate, burst = rng.choice((0.5, 1.0, 2.0, 4.0)), rng.randrange(1, 6)
        steps = [rng.choice((0.0, 0.125, 0.25, 0.375, 0.625, 1.5, 4.0)) for _ in range(25)]
        times = [sum(steps[: k + 1]) for k in range(len(steps))]  # binary fractions: exact
        play(rate, burst, times, "random frames")
    limiter = attempt(name, hint, learner.new, "RateLimiter", 1.0, 2)
    got = [attempt(name, hint, limiter.allow, u, 0.0) for u in ("u", "u", "u", "other")]
    expect(name, same(got, [True, True, False, True]), f"burst 2 for u, then another user at "
           f"once: {got}", "keep one bucket per user")
    seen = await observe(name, hint, learner, "rate_limited_server", frames=10)
    limited = seen.get("limited") if type(seen) is dict else None
    expect(name, type(limited) is int and limited >= 7, f"live, 10 frames at once with burst "
           f"3: the spammer was refused {limited} times, expected at least 7", hint)
    expect(name, seen.get("calm") == "sent", "live, the calm user's one message was refused",
           "keep one bucket per user")
    return passed(name, f"fractional refills and random timelines; live: {limited}/10 spam "
                  "frames refused, the calm user unaffected")


# -- 5.5 member list across instances --------------------------------------------------

async def members_across_instances(learner: Learner, rng: random.Random) -> None:
    """Two instances on one fakeredis; the member list is their union, kept in Redis
    with an expiry, so a crashed instance's members disappear; a room whose id
    starts with this room's id and a colon is a different room."""
    name = "Exercise 5.5 (members across instances)"
    hint = ("room ids may contain ':', so a key pattern cannot tell 'lobby' from 'lobby:vip': "
            "keep each room's instances under one exact key of the room (a set or hash), each "
            "instance's list under a key with an expiry, and read them by exact name")
    on_a = sorted(rng.sample(_USERS, 3))
    on_b = sorted(rng.sample(_USERS, 3))  # may overlap: a user with a tab on each
    room = rng.choice(_WORDS)
    near = f"{room}:{rng.choice(('vip', 'staff', 'b'))}"
    on_near = sorted(rng.sample([u for u in _USERS if u not in on_a and u not in on_b], 2))
    seen = await observe(name, hint, learner, "members_across_instances", room=room, near=near,
                         on_a=on_a, on_b=on_b, on_near=on_near)
    expect(name, type(seen) is dict and type(seen.get("ttls")) is dict,
           f"the harness reported {seen!r}", hint)
    ttls = seen["ttls"]
    expect(name, bool(ttls), "announce wrote nothing to Redis", hint)
    expect(name, all(type(t) is int and t > 0 for t in ttls.values()),
           f"every key announce writes needs an expiry (TTL), got {ttls}: without one, a "
           "crashed instance's members stay listed forever", hint)
    want = sorted(set(on_a) | set(on_b))
    expect(name, same(seen.get("room"), want), f"room_members(..., {room!r}) returned "
           f"{seen.get('room')!r}, expected {want} (each user once, sorted)", hint)
    expect(name, same(seen.get("near"), on_near), f"room_members(..., {near!r}) returned "
           f"{seen.get('near')!r}, expected {on_near}", hint)
    expect(name, same(seen.get("after"), on_a), f"instance B stopped announcing (its ttl was "
           f"1 s); room_members returned {seen.get('after')!r}, expected {on_a}", hint)
    return passed(name, f"{len(want)} random users on two instances, a room named {near!r} "
                  "beside it, expiry in Redis")

