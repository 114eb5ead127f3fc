"""Grade collected notebooks: ``python -m wskit grade PATH... [--csv F] [--timeout S] [--jobs N]``.

Each submission runs in its own process and its own fresh kernel: every code
cell except the course's check cells (tagged ``check``) executes, with errors
allowed and the whole run cut off at ``--timeout`` (a hung cell is interrupted
and recorded). Then the grader runs each exercise's check itself, in that
kernel, against the learner's definitions (:func:`wskit.course.exercises.outcome`,
after reloading wskit's checks so a notebook cannot have patched them). So a
learner who edits or deletes the check cells, or prints a success line, gains
nothing. Results are marked with a random nonce, which the learner's code
never sees printed before it runs. A submission whose kernel cannot be stopped
is killed, and scores 0 with a hint that says so; servers a notebook started
end with its kernel. Servers bind port 0, so submissions run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exercises import EXERCISES, for_notebook

__all__ = ["Row", "grade", "notebook_of", "write_csv", "format_table", "CHECK_TAG"]

CHECK_TAG = "check"
#: per exercise, once the notebook has run: the longest check takes a few seconds
CHECK_TIMEOUT = 60.0

_RELOAD = """\
import importlib as _wskit_il, json as _wskit_json, sys as _wskit_sys
for _wskit_m in ("wskit.course.teaching", "wskit.course.exercises.chat", "wskit.course.exercises.reliability",
                 "wskit.course.exercises"):
    _wskit_il.reload(_wskit_sys.modules[_wskit_m]) if _wskit_m in _wskit_sys.modules \\
        else _wskit_il.import_module(_wskit_m)
"""
_CHECK = """\
_wskit_x = _wskit_sys.modules["wskit.course.exercises"]
_wskit_r = await _wskit_x.outcome(
    [e for e in _wskit_x.EXERCISES if e.key == {key!r}][0], globals(), {timeout!r})
print({marker!r} + _wskit_json.dumps(_wskit_r))
"""


@dataclass(frozen=True)
class Row:
    submission: str
    exercise: str
    points: int
    max: int
    hint: str


def notebook_of(path: Path, notebook: dict[str, Any]) -> str | None:
    """Which course notebook a submission is: its metadata (``wskit.notebook``), else
    a course notebook's name inside the file name (``alice-05_exercises.ipynb``)."""
    named = notebook.get("metadata", {}).get("wskit", {}).get("notebook")
    stems = {e.notebook for e in EXERCISES}
    if named in stems:
        return str(named)
    for stem in sorted(stems):
        if stem in path.name:
            return stem
    return None


def _is_check_cell(cell: Any) -> bool:
    return CHECK_TAG in cell.get("metadata", {}).get("tags", [])


async def _run_in_kernel(path: Path, timeout: float) -> list[dict[str, Any]]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    stem = notebook_of(path, nb)
    if stem is None:
        return [{"exercise": "?", "points": 0, "max": 0,
                 "hint": "not a course notebook with exercises (no wskit.notebook metadata and "
                         "no course notebook name in the file name)"}]
    exercises = for_notebook(stem)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "TimeoutError", "evalue": "cut off by the grader",
                          "traceback": []},
        resources={"metadata": {"path": str(path.parent)}})
    marker = f"WSKIT-GRADE-{secrets.token_hex(8)} "
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    results: dict[str, dict[str, Any]] = {}
    cut_off = False
    async with client.async_setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or _is_check_cell(cell):
                continue
            left = deadline - loop.time()
            if left <= 1:
                cut_off = True
                break
            client.timeout = int(left)
            await client.async_execute_cell(cell, index)
            if any(o.get("ename") == "TimeoutError" and o.get("evalue") == "cut off by the grader"
                   for o in cell.get("outputs", [])):
                cut_off = True
                break
        cells = [nbformat.v4.new_code_cell(_RELOAD)] + [
            nbformat.v4.new_code_cell(_CHECK.format(key=e.key, timeout=CHECK_TIMEOUT,
                                                    marker=marker)) for e in exercises]
        client.timeout = int(CHECK_TIMEOUT + 15)
        first = len(nb.cells)
        nb.cells.extend(cells)  # nbclient records outputs by index in the notebook
        for offset, cell in enumerate(cells):
            await client.async_execute_cell(cell, first + offset)
            for output in cell.get("outputs", []):
                for line in str(output.get("text", "")).splitlines():
                    if line.startswith(marker):
                        found = json.loads(line[len(marker):])
                        results[found["exercise"]] = found
    rows = []
    for exercise in exercises:
        result = results.get(exercise.key)
        if result is None:
            result = {"exercise": exercise.key, "points": 0, "max": exercise.points,
                      "hint": "the check could not run: the kernel did not answer"}
        if cut_off and not result["points"]:
            result["hint"] = f"notebook cut off after {timeout:.0f} s; " + result["hint"]
        rows.append(result)
    return rows


def _grade_one(path: Path, timeout: float) -> list[Row]:
    """Grade one submission in a child process, killed if it outlives its budget."""
    notebook: dict[str, Any] = {}
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [Row(str(path), "?", 0, 0, f"cannot read the notebook: {exc}")]
    stem = notebook_of(path, notebook)
    exercises = for_notebook(stem) if stem else []
    budget = timeout + (CHECK_TIMEOUT + 15) * (len(exercises) + 1) + 30
    proc = subprocess.Popen([sys.executable, "-m", "wskit.course.grading", str(path), str(timeout)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [Row(str(path), e.key, 0, e.points, f"stopped by the grader after {budget:.0f} s")
                for e in exercises]
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return [Row(str(path), e.key, 0, e.points, f"the grader failed: {tail}")
                for e in exercises] or [Row(str(path), "?", 0, 0, f"the grader failed: {tail}")]
    return [Row(str(path), r["exercise"], int(r["points"]), int(r["max"]), r["hint"])
            for r in found]


def _submissions(paths: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found


def grade(paths: Iterable[str], timeout: float = 300.0, jobs: int = 2) -> list[Row]:
    """Grade every notebook in ``paths`` (files or folders), ``jobs`` at a time."""
    submissions = _submissions(paths)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        graded = list(pool.map(lambda p: _grade_one(p, timeout), submissions))
    return [row for rows in graded for row in rows]


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "exercise", "points", "max", "hint"])
        for r in rows:
            writer.writerow([r.submission, r.exercise, r.points, r.max, r.hint])


def format_table(rows: Sequence[Row], width: int = 70) -> str:
    """Submission, exercise, points, max and the first failing hint, one row each,
    then each submission's total."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    name_w = max([len("submission")] + [len(r.submission) for r in rows])
    lines = [f"{'submission':<{name_w}}  exercise  points  max  hint"]
    for r in rows:
        lines.append(f"{r.submission:<{name_w}}  {r.exercise:<8}  {r.points:>6}  {r.max:>3}  "
                     f"{cut(r.hint)}")
    totals: dict[str, list[int]] = {}
    for r in rows:
        got = totals.setdefault(r.submission, [0, 0])
        got[0] += r.points
        got[1] += r.max
    lines.append("")
    lines += [f"{name:<{name_w}}  total {got}/{of}" for name, (got, of) in totals.items()]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="submitted notebooks or folders")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="also write submission,exercise,points,max,hint")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="cut each notebook's own cells off after S seconds (default 300)")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="notebooks graded side by side (default 2)")


def run(args: argparse.Namespace) -> int:
    rows = grade(args.paths, timeout=args.timeout, jobs=args.jobs)
    print(format_table(rows), flush=True)
    if args.csv:
        write_csv(rows, Path(args.csv))
    return 0


def _child(argv: Sequence[str]) -> None:
    """``python -m wskit.course.grading PATH TIMEOUT``: one submission; one JSON line out."""
    path, timeout = Path(argv[0]), float(argv[1])
    os.environ.pop("WSKIT_REDIS_URL", None)  # the learner's run: fakeredis, as in class
    rows = asyncio.run(_run_in_kernel(path, timeout))
    print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1:])
