"""Checks for the exercises in notebooks 01, 03, 04, 07 and 08: the reliability
lessons (a broadcast that survives a dead socket and a stuck one, retrying
through a backplane outage, a heartbeat that checks its pongs, backoff with
jitter, history to live without a gap, presence with expiry).

Written against a :class:`~wskit.course.learner.Learner` and an ``rng``, like the
checks of :mod:`.chat`; where the lesson is about the wire, a harness
(:mod:`.harness`) plays the cases on real sockets beside the learner's code and
reports what it saw, and the check judges it here.
"""

from __future__ import annotations

import random
from typing import Any

from ..learner import Learner, observe, same
from ..teaching import attempt, expect, passed

__all__ = ["dead_socket_broadcast", "retry_when_unavailable", "pong_watch", "full_jitter",
           "history_to_live", "presence_expiry", "OUTBOX"]

#: 1.1: a reader with more than this many messages waiting is dropped
OUTBOX = 100


def _not_yet(name: str, hint: str, raised: Any) -> None:
    """A harness saw the learner's stub raise: say so as the other checks do."""
    expect(name, not (type(raised) is dict and raised.get("kind") == "NotImplementedError"),
           "not implemented yet", hint)


# -- notebook 01: a broadcast that survives a dead socket and a stuck one -----------------

def _round(rng: random.Random, n: int, stuck: int = 0, broadcasts: int = 1,
           limit: float = 5.0) -> dict[str, Any]:
    users = rng.sample([f"user{k}" for k in range(30)], rng.randrange(5, 10))
    dead = rng.sample(users, rng.randrange(1, len(users) - 3))
    alive = [u for u in users if u not in dead]
    stuck_users = rng.sample(alive, stuck)
    exclude = rng.choice([u for u in alive if u not in stuck_users] + [None])
    slow = rng.choice([u for u in alive if u not in stuck_users and u != exclude])
    return {"room": f"room{n}", "users": users, "dead": {u: rng.randrange(3) for u in dead},
            "stuck": stuck_users, "exclude": exclude, "slow": slow,
            "newcomer": f"late-{rng.getrandbits(16):04x}", "broadcasts": broadcasts,
            "limit": limit, "message": {"type": "message", "content": f"{rng.getrandbits(32):08x}"}}


async def dead_socket_broadcast(learner: Learner, rng: random.Random) -> None:
    """``broadcast_to_room(manager, room_id, message, exclude=None)`` on the seed's manager:
    20 rooms with dead sockets and a join mid-broadcast; 3 with a reader that never
    reads (the broadcast must not wait on it); one flooded past the outbox's bound."""
    name = "Exercise 1.1 (a broadcast that survives a dead socket)"
    hint = ("give each socket an outbox (a bounded asyncio.Queue) and a writer task that sends "
            "from it; the broadcast only puts into outboxes (put_nowait), so it never waits; "
            "a writer whose send raises, or an outbox that is full, means that user is gone: "
            "await manager.disconnect(user)")
    rounds = [_round(rng, n) for n in range(20)]
    rounds += [_round(rng, n, stuck=1, limit=1.0) for n in range(20, 23)]
    rounds.append(_round(rng, 23, stuck=1, broadcasts=3 * OUTBOX, limit=1.0))
    seen = await observe(name, hint, learner, "dead_socket_broadcast", rounds=rounds)
    expect(name, type(seen) is list and len(seen) == len(rounds),
           f"the harness reported {str(seen)[:200]}", hint)
    for r, got in zip(rounds, seen):
        users, dead, stuck = r["users"], set(r["dead"]), set(r["stuck"])
        raised = got["raised"]
        _not_yet(name, hint, raised)
        if raised is not None and raised.get("kind") == "Timeout":
            expect(name, False, f"a broadcast to {len(users)} users, one of whom never reads "
                   f"(its send never returns), was still running after {r['limit']:.0f} s: the "
                   "seed's loop, and a loop that awaits each send in turn, wait on the slowest "
                   "reader", hint)
        expect(name, raised is None, f"the broadcast raised {raised and raised['text']} with "
               f"{len(dead)} dead socket(s) among {len(users)}", hint)
        want_live = [{**r["message"], "n": n} for n in range(r["broadcasts"])]
        for user in users:
            if user in stuck:
                continue
            want = [] if user in dead or user == r["exclude"] else want_live
            received = got["received"].get(user)
            expect(name, same(received, want),
                   f"{user} received {str(received)[:120]} (dead: {user in dead}, excluded: "
                   f"{user == r['exclude']}), expected {str(want)[:120]}", hint)
        late = got["received"].get(r["newcomer"])
        expect(name, type(late) is list and len(late) <= len(want_live),
               f"the user who joined during the broadcast got {str(late)[:120]}", hint)
        for user in dead:
            expect(name, user not in got["connections"]
                   and all(user not in members for members in got["rooms"].values()),
                   f"{user}'s socket is dead, yet it is still in the manager (connections or a "
                   "room): the next broadcast would fail on it again", hint)
        for user in users:
            if user not in dead and user not in stuck:
                expect(name, user in got["connections"] and user in got["rooms"][r["room"]],
                       f"{user} is alive but was removed",
                       "remove only the users whose send failed or whose outbox is full")
        if r["broadcasts"] > OUTBOX:
            gone = [u for u in stuck if u in got["connections"]]
            expect(name, not gone, f"{r['broadcasts']} broadcasts while {gone[0] if gone else ''}"
                   f" read nothing, and it is still connected: bound its outbox ({OUTBOX} "
                   "messages) and drop a reader that far behind", hint)
    return passed(name, "20 random rooms with dead sockets and a join mid-broadcast; "
                  "4 with a reader that never reads")


# -- notebook 03: retry through a backplane outage ----------------------------------------

async def retry_when_unavailable(learner: Learner, rng: random.Random) -> None:
    """``direct_with_retry(client, to, content, attempts, base)``: a direct message that
    waits out a backplane outage with exponential backoff, gives up after ``attempts``,
    and does not retry a user who is simply offline."""
    name = "Exercise 3.1 (retry through backplane_unavailable)"
    hint = ("call client.direct(...) in a loop of at most `attempts` tries; catch "
            "wskit.ServerError: if its .code is 'backplane_unavailable', wait up to "
            "base * 2 ** attempt (full jitter: a random fraction of it) and try again; any "
            "other code (user_offline) is an answer: raise it; after the last try, raise")
    me, peer = rng.sample(["alice", "bob", "carol", "dave", "erin"], 2)
    contents = [f"{rng.getrandbits(32):08x}" for _ in range(5)]
    outages = [round(rng.uniform(0.3, 0.8), 2) for _ in range(2)]
    attempts, base = 9, 0.01
    seen = await observe(name, hint, learner, "retry_outages", me=me, peer=peer,
                         contents=contents, outages=outages, attempts=attempts, base=base)
    steps = seen.get("steps") if type(seen) is dict else None
    if type(steps) is not list or len(steps) != 5:
        expect(name, False, f"the harness reported {seen!r}", hint)
        return
    up, offline, *across, forever = steps

    def delivered(step: dict[str, Any], what: str) -> None:
        _not_yet(name, hint, step.get("raised"))
        if "raised" in step:
            expect(name, False, f"{what}, your code raised {step['raised']['text']}", hint)
        reply = step.get("reply")
        expect(name, type(reply) is dict and reply.get("type") == "sent",
               f"{what}, return the server's reply (a 'sent' frame), got {reply!r}", hint)
        contents = [f.get("content") for f in step["frames"] if type(f) is dict]
        expect(name, contents == [step["content"]], f"{what}, {peer} got {contents}, expected "
               f"[{step['content']!r}] once", "send again only when the server said it did not "
               "deliver")

    delivered(up, "with Redis up")
    raised = offline.get("raised")
    expect(name, type(raised) is dict and raised.get("code") == "user_offline",
           f"for an offline user, let the ServerError (code user_offline) through; got "
           f"{raised['text'] if raised else offline.get('reply')!r}", hint)
    expect(name, len(offline["calls"]) == 1, f"user_offline is an answer, yet you sent "
           f"{len(offline['calls'])} times", hint)
    for step, outage in zip(across, outages):
        delivered(step, f"across an outage of {outage:.2f} s")
    raised, calls = forever.get("raised"), forever["calls"]
    expect(name, type(raised) is dict and raised.get("code") == "backplane_unavailable",
           f"Redis stayed down: after {attempts} attempts raise the last backplane_unavailable "
           f"error; got {raised['text'] if raised else forever.get('reply')!r}", hint)
    expect(name, len(calls) == attempts, f"with attempts={attempts} and Redis down you sent "
           f"{len(calls)} times, expected exactly {attempts}", hint)
    # a wait: from one answer to the next send (the server takes a while to answer)
    gaps = [nxt[0] - prev[1] for prev, nxt in zip(calls, calls[1:])]
    for k, gap in enumerate(gaps):
        ceiling = base * 2 ** k
        expect(name, gap <= 1.5 * ceiling + 0.15, f"wait {k + 1} was {gap:.3f} s, more than "
               f"base * 2 ** {k} = {ceiling:.3f} s", hint)
    early, late = sum(gaps[:3]), sum(gaps[-3:])
    expect(name, late >= 4 * early + 0.1, f"the waits did not grow exponentially: the first "
           f"three {[round(g, 3) for g in gaps[:3]]}, the last three "
           f"{[round(g, 3) for g in gaps[-3:]]}", hint)
    return passed(name, f"delivered once through two outages; user_offline not retried; "
                  f"{attempts} attempts with growing waits when Redis stayed down")


# -- notebook 04: a heartbeat that checks its pongs -----------------------------------------

def _expected_dead(events: list[tuple[str, float]], timeout: float, now: float) -> bool:
    oldest_unanswered: float | None = None
    for kind, t in events:
        if kind == "ping" and oldest_unanswered is None:
            oldest_unanswered = t
        elif kind == "pong":
            oldest_unanswered = None
    return oldest_unanswered is not None and now - oldest_unanswered > timeout


#: 4.1: how late past interval + timeout a loaded machine may close the silent client
LIVE_SLACK = 1.5


async def pong_watch(learner: Learner, rng: random.Random) -> None:
    """``PongWatch(timeout)`` with ``ping(now)``, ``pong(now)``, ``dead(now)``: random
    timelines, then live: a real aiohttp server pings two clients through the class
    and must close the one that stopped answering, and only it."""
    name = "Exercise 4.1 (a heartbeat that checks its pongs)"
    hint = ("remember when the oldest unanswered ping was sent (a second ping while one is "
            "unanswered does not move it); a pong answers them all; dead(now) is "
            "now - that time > timeout")
    for _ in range(100):
        timeout = rng.choice((1.0, 2.0, 5.0))
        watch = attempt(name, hint, learner.new, "PongWatch", timeout)
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
    seen = await observe(name, hint, learner, "pong_watch_live", interval=interval,
                         timeout=timeout)
    closed = seen.get("closed", {}) if type(seen) is dict else {}
    expect(name, not seen.get("errors"), f"live, your class raised {seen.get('errors')}", hint)
    took = closed.get("silent")
    expect(name, type(took) is float and took <= interval + timeout + LIVE_SLACK,
           f"the silent client was closed after {took} s (interval {interval}, timeout "
           f"{timeout}; allowed {interval + timeout + LIVE_SLACK:.1f} s)", hint)
    expect(name, "live" not in closed, "the client that answered every ping was closed", hint)
    return passed(name, f"100 random timelines; live: the silent client closed after "
                  f"{took:.2f} s, the answering one kept")


# -- notebook 07: recovery -------------------------------------------------------

def full_jitter(learner: Learner, rng: random.Random) -> None:
    """``backoff_delay(attempt, base, cap, rng)``: a full-jitter wait, drawn with ``rng``.

    Random bases, caps and seeds, thousands of draws: a constant, a fixed schedule
    or a jitter that never reaches 0 or the ceiling cannot pass.
    """
    name = "Exercise 7.1 (backoff with full jitter)"
    hint = ("the wait is rng.uniform(0, min(cap, base * 2 ** attempt)): exponential growth, "
            "capped, and the whole range drawn at random (not a small +-25% around it)")
    for _ in range(3):
        base, cap = rng.uniform(0.05, 0.5), rng.uniform(2.0, 20.0)
        seed = rng.randrange(1 << 30)
        for attempt_no in range(0, 12, 3):
            ceiling = min(cap, base * 2 ** attempt_no)
            given = random.Random(seed)
            draws = attempt(name, hint, learner.call_many, "backoff_delay",
                            [[attempt_no, base, cap, given]] * 1000)
            expect(name, all(type(d) in (int, float) for d in draws),
                   "return a number of seconds", hint)
            low, high, mean = min(draws), max(draws), sum(draws) / len(draws)
            expect(name, 0 <= low and high <= ceiling + 1e-9,
                   f"attempt {attempt_no} (base {base:.2f}, cap {cap:.1f}): waits must lie in "
                   f"[0, {ceiling:.3f}], got {low:.3f} to {high:.3f}", hint)
            expect(name, low < 0.05 * ceiling and high > 0.95 * ceiling
                   and abs(mean - ceiling / 2) < 0.05 * ceiling,
                   f"attempt {attempt_no}: waits should spread evenly over [0, {ceiling:.3f}] "
                   f"(min {low:.3f}, max {high:.3f}, mean {mean:.3f})", hint)
            replay = attempt(name, hint, learner.call, "backoff_delay", attempt_no, base, cap,
                             random.Random(seed))
            expect(name, same(replay, draws[0]),
                   "draw from the rng you are given, so that a run can be replayed", hint)
    return passed(name, "12,000 draws over random bases, caps and seeds")


def history_to_live(learner: Learner, rng: random.Random) -> None:
    """``merge(replayed, buffered, top)``: what a rejoining client is given, in order.

    ``replayed``: the history read after the client's offset (offsets up to ``top``);
    ``buffered``: live messages that arrived for it meanwhile, some of them also in
    the history. Random cases: no gap, no duplicate, offset order.
    """
    name = "Exercise 7.2 (history to live without a gap)"
    hint = ("deliver every replayed message, then only the buffered ones whose offset is "
            "above top: the others were already in the history you read")
    for _ in range(50):
        since = rng.randrange(0, 50)
        top = since + rng.randrange(0, 20)
        last_live = top + rng.randrange(0, 10)
        replayed = [{"offset": o, "content": f"m{o}"} for o in range(since + 1, top + 1)]
        first_buffered = rng.randrange(since + 1, top + 2) if top > since else top + 1
        buffered = [{"offset": o, "content": f"m{o}"} for o in range(first_buffered, last_live + 1)]
        got = attempt(name, hint, learner.call, "merge", replayed, buffered, top)
        want = [{"offset": o, "content": f"m{o}"} for o in range(since + 1, last_live + 1)]
        offsets = [m.get("offset") if type(m) is dict else m for m in got] \
            if type(got) is list else got
        expect(name, same(got, want),
               f"since {since}, top {top}, buffered {first_buffered}..{last_live}: delivered "
               f"offsets {offsets}, expected {[m['offset'] for m in want]}", hint)
    return passed(name, "50 random rejoins: no gap, no duplicate, in order")


# -- notebook 08: presence ---------------------------------------------------------

def presence_expiry(learner: Learner, rng: random.Random) -> None:
    """``alive_users(entries, now)``: the users present at ``now``.

    ``entries`` are ``(user, instance, expires_at)``; an entry counts while
    ``expires_at > now``; a user is present while any of its entries counts (a
    user with tabs on two instances). Random rooms against wskit's own store:
    a fixed list, ignoring expiry, or counting entries instead of users fails.
    """
    from ...server.presence import MemoryPresence

    name = "Exercise 8.1 (presence with expiry)"
    hint = ("keep the entries whose expires_at is after now, then the distinct users of "
            "those, sorted: one live entry (any instance) is enough")
    for _ in range(200):
        now = rng.uniform(100, 1000)
        pairs = {(f"u{rng.randrange(6)}", f"i{rng.randrange(3)}") for _ in range(rng.randrange(12))}
        entries = [(u, i, now + rng.uniform(-30, 30)) for u, i in sorted(pairs)]
        rng.shuffle(entries)
        store = MemoryPresence(clock=lambda: now)  # wskit's own store, same room
        for user, instance, expires in entries:
            store._rooms.setdefault("r", {})[(user, instance)] = expires
        want = list(store.users("r"))
        got = attempt(name, hint, learner.call, "alive_users", [list(e) for e in entries], now)
        expect(name, type(got) is list, f"return a list, got {type(got).__name__}", hint)
        expect(name, same(got, want), f"at now={now:.1f} with {len(entries)} entries you said "
               f"{got}, the present users are {want}", hint)
    return passed(name, "200 random rooms agree with wskit's presence store")
