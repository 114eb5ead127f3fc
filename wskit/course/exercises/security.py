"""Checks for the exercises in notebook 10 (who may do what): an authorization policy.

Random users, claims, rooms and actions every run, compared with the rule as stated,
so that no constant answer (always True, always False) and no fixed table passes.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from typing import Any

from ..teaching import ExerciseFailed, attempt, expect, passed, settle

__all__ = ["check_team_policy"]

_ACTIONS = ("join", "post", "history", "presence", "direct")
_READS = ("join", "history", "presence")
_TEAMS = ("red", "blue", "green")


def _rule(user: str, claims: dict[str, Any], action: str, target: str) -> bool:
    """The policy of exercise 10.1, as the notebook states it."""
    if action == "direct":
        friends = claims.get("friends")
        return isinstance(friends, list) and target in friends
    if target == "lobby":
        return True
    if target == "announcements":
        return action in _READS or claims.get("role") == "admin"
    if target.startswith("team-"):
        return claims.get("team") == target[len("team-"):]
    return False


def _case(rng: random.Random, users: list[str]) -> tuple[str, dict[str, Any], str, str]:
    user = rng.choice(users)
    claims: dict[str, Any] = {"sub": user}
    if rng.random() < 0.8:
        claims["team"] = rng.choice(_TEAMS)
    if rng.random() < 0.3:
        claims["role"] = rng.choice(("admin", "member", "guest"))
    if rng.random() < 0.6:
        claims["friends"] = rng.sample([u for u in users if u != user], rng.randrange(0, 3))
    action = rng.choice(_ACTIONS)
    if action == "direct":
        target = rng.choice(claims.get("friends") or users) if rng.random() < 0.6 \
            else rng.choice(users)
    else:
        target = rng.choice(["lobby", "announcements", *(f"team-{t}" for t in _TEAMS),
                             f"team-{secrets.token_hex(2)}", f"{rng.choice(users)}-private",
                             "teams", "team-"])
    return user, claims, action, target


async def check_team_policy(authorize: Callable[..., Any]) -> None:
    """``authorize(user, claims, action, target) -> bool`` (sync or async): the team rule."""
    name = "Exercise 10.1 (a team policy)"
    hint = ("go rule by rule, in order: 'direct' is allowed only to a user listed in "
            "claims['friends']; 'lobby' allows everything; 'announcements' allows join, "
            "history and presence to all and post only to claims.get('role') == 'admin'; "
            "'team-X' allows everything when claims.get('team') == X; anything else: False")
    rng = random.Random()
    users = rng.sample(["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"], 6)
    seen = {True: 0, False: 0}
    for _ in range(400):
        user, claims, action, target = _case(rng, users)
        want = _rule(user, claims, action, target)
        got = await settle(name, hint, attempt(name, hint, authorize, user, dict(claims),
                                               action, target))
        expect(name, isinstance(got, bool),
               f"authorize returned {got!r} ({type(got).__name__}); return True or False "
               "(a server grants only on True)", hint)
        if got != want:
            raise ExerciseFailed(
                name, f"authorize({user!r}, {claims!r}, {action!r}, {target!r}) returned "
                f"{got}, expected {want}", hint)
        seen[want] += 1
    # a run with only one kind of answer would let a constant through: never happens by
    # construction (lobby always grants, unknown rooms never), but say so if it did
    expect(name, seen[True] > 0 and seen[False] > 0, "the random cases were one-sided; run "
           "the check again", hint)
    passed(name, f"400 random requests ({seen[True]} granted, {seen[False]} refused)")
