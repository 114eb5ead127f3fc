"""Classroom mechanics: exercise checks with hints, and student copies of notebooks.

Marking solutions: a code cell tagged ``solution`` (cell metadata ``tags``), or
whose first line is ``# SOLUTION``, is an instructor's cell; so is one tagged
``answer`` (or starting with ``# ANSWER``), the answer to a concept question. A student copy is
the notebook without those cells, with every output cleared, and with the
exercises' last hint withheld (the ladder's last rung nearly hands over the code:
it is the teacher's to give), whether shown by ``exercises.about`` or written
inline in a markdown cell::

    python -m wskit student-copies notebooks --out notebooks/student

A check raises :class:`ExerciseFailed` (an ``AssertionError``) whose message
starts with the exercise's name and ends with a hint; it never passes on a stub.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["ExerciseFailed", "passed", "attempt", "settle", "expect", "until", "LogCatcher", "show_logs",
           "is_solution_cell", "is_answer_cell", "student_copy", "student_about",
           "write_student_copies", "SOLUTION_TAG", "SOLUTION_MARKER", "ANSWER_TAG", "ANSWER_MARKER",
           "STUDENT_EDITION"]

SOLUTION_TAG = "solution"
SOLUTION_MARKER = "# SOLUTION"
#: the teacher's answer to a concept question (:mod:`wskit.course.questions`)
ANSWER_TAG = "answer"
ANSWER_MARKER = "# ANSWER"
#: ``metadata.wskit.edition`` of a student copy
STUDENT_EDITION = "student"

#: the cell that shows an exercise's hints, as the course notebooks write it
_ABOUT = re.compile(r'^exercises\.about\("([^"]+)"\)\s*$')
#: a markdown paragraph that lists hints inline ("Hints, one at a time: ...")
_INLINE_HINTS = re.compile(r"(?ms)^\**Hints?\b.*?(?:\n\s*\n|\Z)")


class ExerciseFailed(AssertionError):
    """An exercise check failed; the message says what and gives a hint."""

    def __init__(self, exercise: str, problem: str, hint: str) -> None:
        super().__init__(f"{exercise}: {problem}\nHint: {hint}")
        self.exercise = exercise
        self.problem = problem
        self.hint = hint


def passed(exercise: str, detail: str = "") -> None:
    from .learner import is_quiet

    if not is_quiet():  # the grader runs checks in threads side by side: no stdout swap
        print(f"✓ {exercise}" + (f": {detail}" if detail else ""))


def attempt(exercise: str, hint: str, func: Callable[..., Any], *args: Any) -> Any:
    """Call the learner's code; a stub or a crash becomes an :class:`ExerciseFailed`."""
    try:
        return func(*args)
    except Exception as exc:
        raise _failure(exercise, hint, exc) from exc


async def settle(exercise: str, hint: str, value: Any) -> Any:
    """Await what the learner's code returned, if it is awaitable (``async def``
    answers); a stub or a crash becomes an :class:`ExerciseFailed`, as in :func:`attempt`."""
    if not inspect.isawaitable(value):
        return value
    try:
        return await value
    except Exception as exc:
        raise _failure(exercise, hint, exc) from exc


def _failure(exercise: str, hint: str, exc: Exception) -> ExerciseFailed:
    from .learner import LearnerError, LearnerTimeout

    if isinstance(exc, ExerciseFailed):
        return exc
    if isinstance(exc, NotImplementedError) or (
            isinstance(exc, LearnerError) and exc.kind == "NotImplementedError"):
        return ExerciseFailed(exercise, "not implemented yet", hint)
    if isinstance(exc, LearnerTimeout):  # answers from a sandbox (wskit.course.checker)
        return ExerciseFailed(exercise, f"your code did not answer: {exc.text}", hint)
    if isinstance(exc, LearnerError):
        return ExerciseFailed(exercise, f"your code raised {exc.text}", hint)
    return ExerciseFailed(exercise, f"your code raised {exc!r}", hint)


def expect(exercise: str, condition: bool, problem: str, hint: str) -> None:
    if not condition:
        raise ExerciseFailed(exercise, problem, hint)


def is_solution_cell(cell: dict[str, Any]) -> bool:
    if cell.get("cell_type") != "code":
        return False
    if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    source = cell.get("source", "")
    text = "".join(source) if isinstance(source, list) else source
    return text.lstrip().startswith(SOLUTION_MARKER)


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_answer_cell(cell: dict[str, Any]) -> bool:
    """The teacher's answer to a concept question: left out of student copies too."""
    if cell.get("cell_type") != "code":
        return False
    if ANSWER_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    return _text(cell).lstrip().startswith(ANSWER_MARKER)


def student_copy(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without solution and answer cells, outputs cleared, the last hint withheld.

    Cell for cell the same otherwise (same ids and tags, so the grader and the
    suite find the check cells): ``exercises.about("K")`` becomes
    ``student_about("K")``, and a markdown paragraph that starts with "Hints" is
    dropped from its cell."""
    copy = json.loads(json.dumps(notebook))
    cells = []
    for cell in copy["cells"]:
        if is_solution_cell(cell) or is_answer_cell(cell):
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            about = _ABOUT.match(_text(cell).strip())
            if about:
                cell["source"] = ("from wskit.course.teaching import student_about\n"
                                  f'student_about("{about.group(1)}")')
        elif cell.get("cell_type") == "markdown":
            cell["source"] = _INLINE_HINTS.sub("", _text(cell)).rstrip("\n")
        cells.append(cell)
    copy["cells"] = cells
    copy.setdefault("metadata", {}).setdefault("wskit", {})["edition"] = STUDENT_EDITION
    return copy


class _StudentAbout:
    """``exercises.about`` without the ladder's last rung."""

    def __init__(self, key: str) -> None:
        from .exercises import EXERCISES  # here: the exercises import this module

        found = [e for e in EXERCISES if e.key == key]
        if not found:
            raise KeyError(f"no exercise {key!r}; there are {[e.key for e in EXERCISES]}")
        self.exercise = found[0]
        self.hints = self.exercise.hints[:-1]

    def _heading(self) -> str:
        e = self.exercise
        return (f"Exercise {e.key}: {e.title} ({e.difficulty}, {e.points} point"
                f"{'s' if e.points > 1 else ''}, about {e.minutes} minutes)")

    def __repr__(self) -> str:
        lines = [self._heading()]
        lines += [f"  hint {n}: {hint}" for n, hint in enumerate(self.hints, 1)]
        lines.append(f"  hint {len(self.hints) + 1}: ask your teacher")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        ladder = "".join(f"<details><summary>Hint {n}</summary><p>{html.escape(hint)}</p>"
                         f"</details>" for n, hint in enumerate(self.hints, 1))
        return (f"<p><b>{html.escape(self._heading())}</b>. Stuck? Open one hint at a time; "
                f"the last one is your teacher's to give.</p>{ladder}")


def student_about(key: str) -> _StudentAbout:
    """What a student copy shows for an exercise: its difficulty, time and every
    hint but the last, which nearly hands over the code."""
    return _StudentAbout(key)


def write_student_copies(source: Path, out: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Write a student copy of each notebook in ``source`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.ipynb")):
        if names is not None and path.name not in names:
            continue
        notebook = json.loads(path.read_text(encoding="utf-8"))
        target = out / path.name
        target.write_text(json.dumps(student_copy(notebook), indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        written.append(target)
    return written


async def until(predicate: Callable[[], Any], timeout: float = 3.0, what: str = "") -> None:
    """Wait (bounded) until ``predicate()`` holds: for lessons that watch someone
    else's server, which sends no acknowledgement to wait on. ``predicate`` may
    be a coroutine function."""
    async def holds() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await holds():
        if loop.time() > deadline:
            raise TimeoutError(f"gave up after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


class LogCatcher:
    """Collect what a logger reports (one line each), instead of tracebacks in the notebook."""

    def __init__(self, *names: str) -> None:
        self.seen: list[str] = []
        catcher = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                exc = record.exc_info[1] if record.exc_info else None
                catcher.seen.append(f"{type(exc).__name__}: {exc}" if exc else record.getMessage())

        self._handler = _Handler()
        self._loggers = [logging.getLogger(n) for n in names]
        for logger in self._loggers:
            logger.addHandler(self._handler)
            logger.propagate = False

    @property
    def last(self) -> str:
        return self.seen[-1] if self.seen else "(nothing logged)"

    def close(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self._handler)
            logger.propagate = True


class _PlainOutput(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time (Jupyter swaps it per cell)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"[log {record.levelname.lower()} · {record.name}] {record.getMessage()}",
                  file=sys.stdout)
        except Exception:  # a log line must never break the lesson
            self.handleError(record)


def show_logs(*names: str, level: int = logging.WARNING) -> None:
    """Print the log lines of ``names`` (default ``wskit``) as plain output.

    Jupyter shows anything written to stderr in a red box, which reads as "this
    cell failed". In these notebooks the faults are planned, and a reconnecting
    backplane's log lines are part of the lesson, so they print like any other
    output. Calling it again changes nothing.
    """
    for name in names or ("wskit",):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _PlainOutput) for h in logger.handlers):
            logger.addHandler(_PlainOutput())
        logger.setLevel(level)
        logger.propagate = False  # else the root's (or lastResort's) stderr gets it too
