"""Concept questions: a number or a letter the learner works out, checked in the notebook.

An exercise asks for code; a question asks for an answer that shows the idea was
understood (04: the worst-case time to find a dead peer, from the settings). The
learner writes the answer into a stub cell (``worst_case_seconds = None``); in the
teacher's notebook a cell tagged ``answer`` (or starting with ``# ANSWER``) holds
it, and student copies leave that cell out, as they leave out solutions. The
check cell (tagged ``check``) calls :func:`check`, which fails with a hint, never
with the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .teaching import ExerciseFailed, passed

__all__ = ["Question", "QUESTIONS", "check", "for_notebook"]


@dataclass(frozen=True)
class Question:
    key: str                         #: "4.a": the notebook's number, then a letter
    notebook: str                    #: the notebook's file name without ".ipynb"
    kind: str                        #: "number" or "choice"
    right: Callable[[Any], bool]     #: whether an answer (already of the right kind) is right
    hint: str                        #: for a wrong answer: where to look, not what to write
    explanation: str                 #: printed once it is right


def _number(want: float) -> Callable[[Any], bool]:
    return lambda given: math.isclose(float(given), want, rel_tol=1e-9, abs_tol=1e-9)


QUESTIONS: tuple[Question, ...] = (
    Question("4.a", "04_heartbeats", "number", _number(40.0),
             "Follow one silent peer on the timeline: when is the next ping sent after its "
             "last pong, and how long does the server wait for an answer to that ping?",
             "the next ping goes out at most ping_interval after the previous one, and its "
             "deadline falls ping_timeout later: 20 + 20 = 40 s (while the server reads it)"),
    Question("4.b", "04_heartbeats", "choice", lambda given: given == "b",
             "Read wskit/server/heartbeat.py, Heartbeat._expire: what does it do when "
             "self.held is True, and why could a pong be late without the peer being dead?",
             "re-armed: while the server is not reading the peer, its pong may be sitting "
             "unread in the socket, so the bound becomes interval + timeout plus the time held"),
)


def for_notebook(notebook: str) -> list[Question]:
    stem = notebook.removesuffix(".ipynb")
    return [q for q in QUESTIONS if q.notebook == stem]


def check(key: str, given: Any) -> None:
    """Check the learner's answer to question ``key``; raise
    :class:`~wskit.course.teaching.ExerciseFailed` with a hint if it is missing or wrong."""
    question = next((q for q in QUESTIONS if q.key == key), None)
    if question is None:
        raise KeyError(f"no question {key!r}; there are {[q.key for q in QUESTIONS]}")
    name = f"question {key}"
    if given is None or given is Ellipsis:
        raise ExerciseFailed(name, "not answered yet", question.hint)
    if question.kind == "number":
        if type(given) not in (int, float) or not math.isfinite(given):
            raise ExerciseFailed(name, f"the answer is a number of seconds, not {given!r}",
                                 question.hint)
    elif type(given) is not str or given.strip().lower() not in ("a", "b", "c", "d"):
        raise ExerciseFailed(name, f"the answer is one letter, not {given!r}", question.hint)
    else:
        given = given.strip().lower()
    if not question.right(given):
        raise ExerciseFailed(name, f"{given!r} is not it", question.hint)
    passed(name, question.explanation)
