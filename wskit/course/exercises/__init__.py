"""The course's exercises: one registry, the checks, and a score that never crashes.

Each :class:`Exercise` names the notebook it lives in, what the learner defines
there (``names``), its check, difficulty, time and a ladder of hints (gentle
first). A notebook shows an exercise with :func:`about`, checks it with its
``check_*`` function, and scores them all with :func:`score`; ``python -m wskit
grade`` runs the same checks (:func:`outcome`) against collected notebooks.

Checks draw random cases on every run and look at state where the task is
stateful, so that no fixed answer passes. A failing check raises
:class:`~wskit.course.teaching.ExerciseFailed` with a hint; :func:`outcome` turns
*anything* the learner's code does (a stub, a crash, a hang) into points and a
hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..teaching import ExerciseFailed
from .chat import (
    check_members_across_instances,
    check_private_messages,
    check_rate_limiter,
    check_slash_commands,
    check_typing_tracker,
)
from .reliability import (
    check_dead_socket_broadcast,
    check_full_jitter,
    check_history_to_live,
    check_pong_watch,
    check_presence_expiry,
    check_retry_when_unavailable,
)
from .security import check_team_policy

__all__ = ["Exercise", "EXERCISES", "about", "for_notebook", "outcome", "score",
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

    @property
    def points(self) -> int:
        return POINTS[self.difficulty]


EXERCISES: tuple[Exercise, ...] = (
    Exercise("1.1", "A broadcast that survives a dead socket", "01_aiohttp_manager",
             ("broadcast_to_room",), check_dead_socket_broadcast, "medium", 15, (
                 "Two things go wrong in the seed's loop: one failed send stops everyone "
                 "after it, and the set it walks can change while it awaits.",
                 "Walk over list(manager.rooms[room_id]), and wrap each send in try/except.",
                 "Collect the users whose send raised; after the loop, await "
                 "manager.disconnect(user) for each, so the next broadcast skips them.")),
    Exercise("3.1", "Retry through backplane_unavailable", "03_redis_scaling",
             ("direct_with_retry",), check_retry_when_unavailable, "medium", 20, (
                 "A direct message that got backplane_unavailable was not delivered, so "
                 "sending it again cannot duplicate it. user_offline is a real answer.",
                 "client.direct() raises wskit.ServerError; its .code says which error.",
                 "for attempt in range(attempts): try: return await client.direct(to, content) "
                 "except ServerError as e: if e.code != 'backplane_unavailable' or the last "
                 "attempt: raise; await asyncio.sleep(random.uniform(0, base * 2 ** attempt))")),
    Exercise("4.1", "A heartbeat that checks its pongs", "04_heartbeats",
             ("PongWatch",), check_pong_watch, "easy", 15, (
                 "The seed never asks whether its pings were answered. What single time do "
                 "you need to remember to know that?",
                 "Keep the send time of the oldest ping not yet answered (None when all are); "
                 "a later ping must not move it forward.",
                 "ping: if self.since is None: self.since = now; pong: self.since = None; "
                 "dead: self.since is not None and now - self.since > self.timeout")),
    Exercise("5.1", "Slash commands", "05_exercises", ("parse_command",),
             check_slash_commands, "easy", 10, (
                 "Lines that do not start with '/' are messages to the current room.",
                 "text[1:].partition(' ') splits the command from the rest exactly once.",
                 "For /msg, partition the rest once more: the first word is the recipient, "
                 "everything after it (spaces included) the content.")),
    Exercise("5.2", "Private messages", "05_exercises", ("transcript",),
             check_private_messages, "easy", 10, (
                 "Only frames of type 'direct' count, and only between these two users.",
                 "{frame['from'], frame['to']} == {me, other} says a frame is theirs.",
                 "Keep their order; format f\"{f['from']} -> {f['to']}: {f['content']}\".")),
    Exercise("5.3", "A typing indicator", "05_exercises", ("TypingTracker",),
             check_typing_tracker, "medium", 15, (
                 "Two times per (user, room): when you last announced, when they last typed.",
                 "typed() always records the keystroke; it announces only if the last "
                 "announcement is throttle seconds old (or there was none).",
                 "expired() returns and forgets the pairs whose last keystroke is expiry "
                 "seconds old or more.")),
    Exercise("5.4", "A per-user rate limit", "05_exercises", ("RateLimiter",),
             check_rate_limiter, "medium", 15, (
                 "A token bucket per user: full at first, refilled with time, capped.",
                 "Store (tokens, when) per user; on each call add (now - when) * rate, "
                 "capped at burst.",
                 "Allow and spend a token if at least one is there; refuse otherwise.")),
    Exercise("5.5", "Who is in the room, across instances", "05_exercises",
             ("announce", "room_members"), check_members_across_instances, "hard", 20, (
                 "Each instance knows only its own members: store its list in Redis.",
                 "Give every instance its own key, so one can expire without the others: "
                 "NS:members:ROOM:INSTANCE.",
                 "announce: SET key json.dumps(users) EX ttl; room_members: every key matching "
                 "NS:members:ROOM:*, json.loads each value, the union, sorted.")),
    Exercise("7.1", "Backoff with full jitter", "07_recovery", ("backoff_delay",),
             check_full_jitter, "easy", 10, (
                 "Exponential: the ceiling doubles with each attempt, up to cap.",
                 "Full jitter draws the whole wait at random between 0 and the ceiling.",
                 "return rng.uniform(0, min(cap, base * 2 ** attempt))")),
    Exercise("7.2", "History to live without a gap", "07_recovery", ("merge",),
             check_history_to_live, "medium", 15, (
                 "Everything replayed is new to the client; some buffered messages are also "
                 "in the history.",
                 "The history was read up to offset `top`.",
                 "replayed + the buffered messages whose offset is above top.")),
    Exercise("8.1", "Presence with expiry", "08_scale_presence", ("alive_users",),
             check_presence_expiry, "easy", 10, (
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


async def outcome(exercise: Exercise, namespace: Mapping[str, Any],
                  timeout: float = 60.0) -> dict[str, Any]:
    """Run one check against the learner's definitions in ``namespace``.

    Never raises: a missing definition, a failing check, a crash or a hang
    becomes ``points`` 0 and a ``hint``. What the check prints is swallowed.
    """
    result = {"exercise": exercise.key, "points": 0, "max": exercise.points, "hint": ""}
    missing = [n for n in exercise.names if n not in namespace]
    if missing:
        result["hint"] = f"define {', '.join(missing)} (its cell was deleted or not run)"
        return result
    args = [namespace[n] for n in exercise.names]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            value = exercise.check(*args)
            if inspect.isawaitable(value):
                await asyncio.wait_for(value, timeout)
    except ExerciseFailed as failure:
        result["hint"] = f"{failure.problem} | hint: {failure.hint}"
    except (asyncio.TimeoutError, TimeoutError):
        result["hint"] = f"the check did not finish within {timeout:.0f} s"
    except Exception as exc:  # the learner's code broke the check itself
        result["hint"] = f"the check stopped on {exc!r}"
    else:
        result["points"] = exercise.points
    return result


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
