"""The course's exercises: one registry, the checks, and a score that never crashes.

Each :class:`Exercise` names the notebook it lives in, what the learner defines
there (``names``), its check, difficulty, time and a ladder of hints (gentle
first). A notebook shows an exercise with :func:`about`, checks it with its
``check_*`` function, and scores them all with :func:`score`.

A check is written once, against a :class:`~wskit.course.learner.Learner` and a
seeded ``random.Random``: in the notebook the learner's objects are called
directly (:class:`~wskit.course.learner.LocalLearner`); ``python -m wskit grade``
runs the *same* check in the grader, with the learner's definitions in a sandbox
that only answers calls (:mod:`wskit.course.checker`). The check draws its cases
from the seed, computes the expected values itself and compares plain values
(:func:`~wskit.course.teaching.same`). A failing check raises
:class:`~wskit.course.teaching.ExerciseFailed` with a hint; :func:`run_check` turns
*anything* the learner's code does (a stub, a crash, a hang) into points and a
hint. Checks whose live part depends on timing (``timing``) get a second try.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import io
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..learner import Learner, LocalLearner, quiet
from ..teaching import ExerciseFailed
from .chat import (
    members_across_instances,
    private_messages,
    rate_limiter,
    slash_commands,
    typing_tracker,
)
from .reliability import (
    dead_socket_broadcast,
    full_jitter,
    history_to_live,
    pong_watch,
    presence_expiry,
    retry_when_unavailable,
)
from .security import check_team_policy

__all__ = ["Exercise", "EXERCISES", "about", "for_notebook", "outcome", "run_check", "score",
           "check_slash_commands", "check_private_messages", "check_typing_tracker",
           "check_rate_limiter", "check_members_across_instances", "check_dead_socket_broadcast",
           "check_retry_when_unavailable", "check_pong_watch", "check_full_jitter",
           "check_history_to_live", "check_presence_expiry", "check_team_policy"]

POINTS = {"easy": 1, "medium": 2, "hard": 3}


@dataclass(frozen=True)
class Exercise:
    key: str                     #: "5.1": the notebook's number, then the exercise's
    title: str
    notebook: str                #: the notebook's file name without ".ipynb"
    names: tuple[str, ...]       #: what the learner defines, passed to ``check`` in order
    check: Callable[..., Any]
    difficulty: str              #: easy, medium or hard
    minutes: int
    hints: tuple[str, ...]       #: a ladder: the first nudges, the last nearly tells
    timing: bool = False         #: a live part a loaded machine can miss: retried once

    @property
    def points(self) -> int:
        return POINTS[self.difficulty]


EXERCISES: tuple[Exercise, ...] = (
    Exercise("1.1", "A broadcast that survives a dead socket and a stuck one",
             "01_aiohttp_manager", ("broadcast_to_room",), dead_socket_broadcast, "medium", 15,
             timing=True, hints=(
                 "Three things go wrong in the seed's loop: one failed send stops everyone "
                 "after it, the set it walks can change while it awaits, and one reader that "
                 "never reads holds up everyone (flaw 6).",
                 "Do not await a send in the broadcast: give each socket an outbox (a bounded "
                 "asyncio.Queue) and one writer task that sends from it.",
                 "The broadcast walks a copy of the room and put_nowait()s into each outbox; "
                 "a full outbox, or a send that raises in the writer, means that user is gone: "
                 "disconnect them.")),
    Exercise("3.1", "Retry through backplane_unavailable", "03_redis_scaling",
             ("direct_with_retry",), retry_when_unavailable, "medium", 20, timing=True, hints=(
                 "backplane_unavailable is worth another try, a bounded number of times; "
                 "user_offline is a real answer.",
                 "client.direct() raises wskit.ServerError; its .code says which error. Wait "
                 "longer after each failure: up to base, 2 * base, 4 * base, ...",
                 "Count the tries: after `attempts` of them, raise the last error instead of "
                 "waiting again; draw each wait at random between 0 and its ceiling.")),
    Exercise("4.1", "A heartbeat that checks its pongs", "04_heartbeats",
             ("PongWatch",), pong_watch, "easy", 15, timing=True, hints=(
                 "The seed never asks whether its pings were answered. What single time do "
                 "you need to remember to know that?",
                 "Keep the send time of the oldest ping not yet answered (None when all are); "
                 "a later ping must not move it forward.",
                 "ping: if self.since is None: self.since = now; pong: self.since = None; "
                 "dead: self.since is not None and now - self.since > self.timeout")),
    Exercise("5.1", "Slash commands", "05_exercises", ("parse_command",),
             slash_commands, "easy", 10, (
                 "Lines that do not start with '/' are messages to the current room.",
                 "text[1:].partition(' ') splits the command from the rest exactly once.",
                 "For /msg, partition the rest once more: the first word is the recipient, "
                 "everything after it (spaces included) the content.")),
    Exercise("5.2", "Private messages", "05_exercises", ("transcript",),
             private_messages, "easy", 10, (
                 "Only frames of type 'direct' count, and only between these two users.",
                 "{frame['from'], frame['to']} == {me, other} says a frame is theirs.",
                 "Keep their order; format f\"{f['from']} -> {f['to']}: {f['content']}\".")),
    Exercise("5.3", "A typing indicator", "05_exercises", ("TypingTracker",),
             typing_tracker, "medium", 15, (
                 "Two times per (user, room): when you last announced, when they last typed.",
                 "typed() always records the keystroke; it announces only if the last "
                 "announcement is throttle seconds old (or there was none).",
                 "expired() returns and forgets the pairs whose last keystroke is expiry "
                 "seconds old or more.")),
    Exercise("5.4", "A per-user rate limit", "05_exercises", ("RateLimiter",),
             rate_limiter, "medium", 15, timing=True, hints=(
                 "A token bucket per user: full at first, refilled with time, capped.",
                 "Store (tokens, when) per user; on each call add (now - when) * rate, "
                 "capped at burst.",
                 "Allow and spend a token if at least one is there; refuse otherwise. Keep "
                 "the fraction: an int bucket at 1/s never refills on frames 0.9 s apart.")),
    Exercise("5.5", "Who is in the room, across instances", "05_exercises",
             ("announce", "room_members"), members_across_instances, "hard", 20, timing=True,
             hints=(
                 "Each instance knows only its own members: store its list in Redis, "
                 "with an expiry, so a crashed instance's list goes by itself.",
                 "Room ids may contain ':': a pattern such as NS:members:lobby:* also matches "
                 "the keys of the room 'lobby:vip'. Never find a room's keys by pattern.",
                 "Keep a set per room (its exact key) of the instances that announced, and "
                 "each instance's list under its own key with EX ttl; room_members reads the "
                 "set, MGETs those keys, and unions the lists that are still there.")),
    Exercise("7.1", "Backoff with full jitter", "07_recovery", ("backoff_delay",),
             full_jitter, "easy", 10, (
                 "Exponential: the ceiling doubles with each attempt, up to cap.",
                 "Full jitter draws the whole wait at random between 0 and the ceiling.",
                 "return rng.uniform(0, min(cap, base * 2 ** attempt))")),
    Exercise("7.2", "History to live without a gap", "07_recovery", ("merge",),
             history_to_live, "medium", 15, (
                 "Everything replayed is new to the client; some buffered messages are also "
                 "in the history.",
                 "The history was read up to offset `top`.",
                 "replayed + the buffered messages whose offset is above top.")),
    Exercise("8.1", "Presence with expiry", "08_scale_presence", ("alive_users",),
             presence_expiry, "easy", 10, (
                 "An entry counts while its expiry is still ahead of now.",
                 "A user is present if any of its entries (any instance) counts.",
                 "sorted({user for user, _, expires_at in entries if expires_at > now})")),
    Exercise("10.1", "A team policy", "10_who_may_do_what", ("authorize",),
             check_team_policy, "medium", 15, (
                 "One rule per kind of target, checked in order; anything no rule allows "
                 "is refused.",
                 "Look at the action first (direct is about users, the rest about rooms), "
                 "then at the room: 'lobby', 'announcements', 'team-...'.",
                 "direct: target in claims.get('friends', []); lobby: True; announcements: "
                 "action != 'post' or claims.get('role') == 'admin'; team-X: "
                 "claims.get('team') == X; else False")),
)


def for_notebook(notebook: str) -> list[Exercise]:
    """The exercises of one notebook (its file name, with or without ``.ipynb``)."""
    stem = notebook.removesuffix(".ipynb")
    return [e for e in EXERCISES if e.notebook == stem]


def _find(key: str) -> Exercise:
    for exercise in EXERCISES:
        if exercise.key == key:
            return exercise
    raise KeyError(f"no exercise {key!r}; there are {[e.key for e in EXERCISES]}")


class _About:
    def __init__(self, exercise: Exercise) -> None:
        self.exercise = exercise

    def __repr__(self) -> str:
        e = self.exercise
        lines = [f"Exercise {e.key}: {e.title} ({e.difficulty}, {e.points} point"
                 f"{'s' if e.points > 1 else ''}, about {e.minutes} minutes)"]
        lines += [f"  hint {n}: {hint}" for n, hint in enumerate(e.hints, 1)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = self.exercise
        ladder = "".join(f"<details><summary>Hint {n}</summary><p>{html.escape(hint)}</p>"
                         f"</details>" for n, hint in enumerate(e.hints, 1))
        return (f"<p><b>Exercise {e.key}: {html.escape(e.title)}</b> · {e.difficulty} · "
                f"{e.points} point{'s' if e.points > 1 else ''} · about {e.minutes} minutes. "
                f"Stuck? Open one hint at a time.</p>{ladder}")


def about(key: str) -> _About:
    """Difficulty, time and the ladder of hints, folded (in Jupyter) until opened."""
    return _About(_find(key))


async def run_check(exercise: Exercise, learner: Learner, seed: int | None,
                    timeout: float = 60.0) -> dict[str, Any]:
    """Run one check against ``learner`` with cases drawn from ``seed``.

    Never raises: a missing definition, a failing check, a crash or a hang becomes
    ``points`` 0 and a ``hint``. What the check prints is swallowed. A ``timing``
    check that fails is run once more (same seed) before its failure counts.
    """
    result = {"exercise": exercise.key, "points": 0, "max": exercise.points, "hint": "",
              "seed": seed}
    for _ in range(2 if exercise.timing else 1):
        try:
            with quiet():
                value = exercise.check(learner, random.Random(seed)) if not _legacy(exercise) \
                    else exercise.check(*learner.objects(exercise.names))
                if inspect.isawaitable(value):
                    await asyncio.wait_for(value, timeout)
        except ExerciseFailed as failure:
            result["hint"] = f"{failure.problem} | hint: {failure.hint}"
            if failure.problem != "not implemented yet":
                continue  # a timing check's second try
        except (asyncio.TimeoutError, TimeoutError):
            result["hint"] = f"the check did not finish within {timeout:.0f} s"
        except Exception as exc:  # the learner's code broke the check itself
            result["hint"] = f"the check stopped on {exc!r}"
        else:
            result["points"], result["hint"] = exercise.points, ""
        break
    return result


async def outcome(exercise: Exercise, namespace: Mapping[str, Any],
                  timeout: float = 60.0, seed: int | None = None) -> dict[str, Any]:
    """Run one check against the learner's definitions in ``namespace`` (in this
    process: the learner's own feedback, as in :func:`score`)."""
    missing = [n for n in exercise.names if n not in namespace]
    if missing:
        return {"exercise": exercise.key, "points": 0, "max": exercise.points, "seed": seed,
                "hint": f"define {', '.join(missing)} (its cell was deleted or not run)"}
    with contextlib.redirect_stdout(io.StringIO()):  # the learner's prints too
        return await run_check(exercise, LocalLearner(namespace), seed, timeout)


async def score(namespace: Mapping[str, Any], notebook: str) -> list[dict[str, Any]]:
    """Check every exercise of ``notebook`` and print what is done and what is left
    (with each failure's hint). For a notebook's last cell: it never raises."""
    results = []
    for exercise in for_notebook(notebook):
        result = await outcome(exercise, namespace)
        results.append(result)
        mark = "✓" if result["points"] else "✗"
        print(f"{mark} {exercise.key} {exercise.title}: {result['points']}/{result['max']}"
              + (f"\n    {result['hint']}" if result["hint"] else ""))
    done = sum(1 for r in results if r["points"])
    print(f"{done} of {len(results)} exercises done, "
          f"{sum(r['points'] for r in results)} of {sum(r['max'] for r in results)} points")
    return results


def _legacy(exercise: Exercise) -> bool:
    """A check in the older style takes the learner's objects (``check(authorize)``)
    rather than ``(learner, rng)``: it still works, locally with the objects, in the
    grader with stand-ins that call into the sandbox (:meth:`RemoteLearner.objects`),
    but it draws its own cases (unseeded). Write new checks as ``(learner, rng)``."""
    params = list(inspect.signature(exercise.check).parameters)
    return params[:2] != ["learner", "rng"]


def _local(key: str) -> Callable[..., Any]:
    """The notebook's ``check_*``: the learner's objects, in ``names`` order; ``seed``
    replays a run. Returns the check's coroutine where the check is async (``await``
    it, as the notebooks do)."""
    def check(*objects: Any, seed: int | None = None) -> Any:
        exercise = _find(key)
        if _legacy(exercise):
            return exercise.check(*objects)
        learner = LocalLearner(dict(zip(exercise.names, objects)))
        return exercise.check(learner, random.Random(seed))

    check.__name__ = check.__qualname__ = f"check_{key.replace('.', '_')}"
    return check


check_dead_socket_broadcast = _local("1.1")
check_retry_when_unavailable = _local("3.1")
check_pong_watch = _local("4.1")
check_slash_commands = _local("5.1")
check_private_messages = _local("5.2")
check_typing_tracker = _local("5.3")
check_rate_limiter = _local("5.4")
check_members_across_instances = _local("5.5")
check_full_jitter = _local("7.1")
check_history_to_live = _local("7.2")
check_presence_expiry = _local("8.1")
