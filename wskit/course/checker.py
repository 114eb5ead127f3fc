"""The grader's side of a check: the learner's definitions in a sandbox, the check here.

:func:`check_in_sandbox` starts a :class:`~wskit.course.sandbox.Sandbox` for one
exercise of one submission, loads the submission's definitions into it
(:func:`~wskit.course.learner.definitions`), and runs the exercise's check in this
process against a :class:`RemoteLearner`. The check draws its cases from the seed
and computes the expected values here; the sandbox only ever sees the arguments
of the calls it is asked to make, and its answers are parsed here with this
process's ``json``. No frame the learner's code can walk holds an expected value,
and no verdict passes through the learner's process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exercises import Exercise, run_check
from .learner import Instance, LearnerError, LearnerTimeout, encode_arg
from .sandbox import Sandbox, SandboxDied

__all__ = ["RemoteLearner", "check_in_sandbox"]


class RemoteLearner:
    """A :class:`~wskit.course.learner.Learner` whose code lives in a sandbox; every
    request must be answered by ``deadline`` (``time.monotonic()``)."""

    def __init__(self, sandbox: Sandbox, deadline: float) -> None:
        self.sandbox, self.deadline = sandbox, deadline
        self._rngs: dict[int, tuple[int, random.Random]] = {}
        self.broken: str | None = None
        self.kinds: dict[str, str] = {}

    def _ask(self, message: dict[str, Any]) -> Any:
        if self.broken:
            raise LearnerTimeout("Timeout", self.broken)
        if "args" in message:
            message["args"] = [encode_arg(a, self._rngs) for a in message["args"]]
        try:
            reply = self.sandbox.request(message, self.deadline)
        except TimeoutError:
            self.broken = "no answer before the grader's deadline"
            self.sandbox.close()
            raise LearnerTimeout("Timeout", self.broken) from None
        except SandboxDied as exc:
            self.broken = str(exc)
            raise LearnerTimeout("Died", self.broken) from None
        if "error" in reply:
            raise LearnerError(str(reply.get("error")), str(reply.get("text", ""))[:500])
        return reply.get("ok")

    def call(self, name: str, *args: Any) -> Any:
        return self._ask({"op": "call", "name": name, "args": list(args)})

    def call_many(self, name: str, calls: list[list[Any]]) -> list[Any]:
        rngs = self._rngs
        found = self._ask({"op": "many", "name": name,
                           "calls": [[encode_arg(a, rngs) for a in args] for args in calls]})
        if type(found) is not list or len(found) != len(calls):
            raise LearnerError("TypeError", "the sandbox answered nonsense")
        return found

    def new(self, name: str, *args: Any) -> Instance:
        ref = self._ask({"op": "new", "name": name, "args": list(args)})
        if type(ref) is not int:
            raise LearnerError("TypeError", "the sandbox answered nonsense")
        return Instance(self, ref)

    def method(self, ref: int, method: str, *args: Any) -> Any:
        return self._ask({"op": "method", "ref": ref, "method": method, "args": list(args)})

    def objects(self, names: tuple[str, ...]) -> list[Any]:
        """Stand-ins for a check in the older style (``check(*objects)``): a class becomes
        a constructor of :class:`Instance`, anything callable a function; every value
        coming back is plain, as with :meth:`call`."""
        def stand_in(name: str) -> Any:
            if self.kinds.get(name) == "class":
                return lambda *args: self.new(name, *args)
            return lambda *args: self.call(name, *args)

        return [stand_in(n) for n in names]

    async def harness(self, fn: str, **params: Any) -> Any:
        # blocking: this thread's loop runs nothing else while the sandbox works
        return await asyncio.to_thread(self._ask, {"op": "harness", "fn": fn, "params": params})


def check_in_sandbox(exercise: Exercise, notebook: bytes, cells: list[str], seed: int,
                     timeout: float, hide: Sequence[Path] = ()) -> dict[str, Any]:
    """Points and hint for one exercise of one submission (never raises); ``hide``:
    the submissions' folders, which the sandbox must not see."""
    started = time.monotonic()
    deadline = started + timeout
    base = {"exercise": exercise.key, "points": 0, "max": exercise.points, "seed": seed}
    try:
        sandbox = Sandbox(notebook, hide=hide)
    except OSError as exc:
        return {**base, "hint": f"the grader could not start a sandbox: {exc}"}
    try:
        return _check(exercise, sandbox, cells, seed, timeout, deadline, base)
    except Exception as exc:  # e.g. a reply nested too deep for json: never stop the run
        return {**base, "hint": f"the grader could not use the sandbox's answer: {exc!r}"[:500]}
    finally:
        sandbox.close()


def _check(exercise: Exercise, sandbox: Sandbox, cells: list[str], seed: int, timeout: float,
           deadline: float, base: dict[str, Any]) -> dict[str, Any]:
    """Load the definitions, then run the check here against them."""
    learner = RemoteLearner(sandbox, deadline)
    try:
        loaded = learner._ask({"op": "load", "cells": cells})
    except LearnerError as exc:
        return {**base, "hint": f"your definitions did not load: {exc.text}"}
    defined = loaded.get("defined", []) if type(loaded) is dict else []
    kinds = loaded.get("kinds") if type(loaded) is dict else None
    learner.kinds = {str(k): str(v) for k, v in kinds.items()} if type(kinds) is dict else {}
    missing = [n for n in exercise.names if n not in defined]
    if missing:
        errors = loaded.get("errors", []) if type(loaded) is dict else []
        return {**base, "hint": f"define {', '.join(missing)} (its cell was deleted, or is "
                "not a def/class)" + (f"; loading raised {errors[0]}" if errors else "")}
    result = asyncio.run(run_check(exercise, learner, seed,
                                   max(1.0, deadline - time.monotonic())))
    if learner.broken and not result["points"]:
        result["hint"] = f"stopped after {timeout:.0f} s ({learner.broken}); " + result["hint"]
    return result
