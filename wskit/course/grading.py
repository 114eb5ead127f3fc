"""Grade collected notebooks: ``python -m wskit grade PATH... [--csv F] [--json F]
[--feedback DIR] [--timeout S] [--jobs N] [--seed N]``.

The verdict is computed where no learner code runs. Every submission is read
once, before anything runs (so no submission can change another's file before it
is graded). From its code cells (except those tagged ``check``) the grader keeps
the *definitions* (imports, ``def``, ``class``, constant assignments:
:func:`~wskit.course.learner.definitions`); nothing else of the notebook runs. Then
each exercise gets a fresh sandbox (:mod:`wskit.course.sandbox`: its own
directory, no network, its own uid and PID namespace where the machine allows,
resource limits, killed as a whole at the deadline) holding those definitions,
which only answers calls; the exercise's check runs in the grader
(:mod:`wskit.course.checker`) with cases drawn from a seed recorded in the
output, so a run can be repeated exactly (``--seed``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .exercises import EXERCISES, Exercise, for_notebook

__all__ = ["Row", "Submission", "grade", "notebook_of", "student_of", "exercise_seed",
           "write_csv", "write_json", "write_feedback", "format_table", "safe_cell",
           "CHECK_TAG"]

CHECK_TAG = "check"
#: per exercise: a sandbox's start (about 2 s), its definitions, the check's calls
DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Row:
    student: str
    submission: str
    exercise: str
    points: int
    max: int
    hint: str
    seed: int | None = None


@dataclass(frozen=True)
class Submission:
    path: Path
    data: bytes              #: the file as read before any learner code ran
    stem: str | None         #: the course notebook it is
    student: str
    cells: list[str]         #: the definitions the grader runs


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


def student_of(path: Path, notebook: dict[str, Any], stem: str | None) -> str:
    """The student id: the notebook's metadata ``wskit.student``, else the file name
    without the course notebook's name (``alice-05_exercises.ipynb`` -> ``alice``)."""
    named = notebook.get("metadata", {}).get("wskit", {}).get("student")
    if isinstance(named, str) and named.strip():
        return named.strip()
    name = path.stem
    if stem:
        name = name.replace(stem, "")
    name = re.sub(r"\s*\(\d+\)\s*$", "", name).strip(" -_.")  # "(1)": a browser's copy
    return name or path.stem


def exercise_seed(run_seed: int, student: str, key: str) -> int:
    """The seed of one exercise of one student in a run: different per student (no
    two draw the same cases), the same whenever the run's seed is given again."""
    digest = hashlib.sha256(f"{run_seed}/{student}/{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _is_check_cell(cell: Any) -> bool:
    return CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def _read(path: Path) -> Submission | Row:
    from .learner import definitions

    try:
        data = path.read_bytes()
        notebook = json.loads(data.decode("utf-8"))
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise ValueError("not a notebook (no cells)")
    except (OSError, ValueError) as exc:
        return Row(path.stem, str(path), "?", 0, 0, f"cannot read the notebook: {exc}")
    stem = notebook_of(path, notebook)
    cells = []
    for cell in notebook["cells"]:
        if isinstance(cell, dict) and cell.get("cell_type") == "code" \
                and not _is_check_cell(cell):
            source = cell.get("source", "")
            cells.append("".join(source) if isinstance(source, list) else str(source))
    return Submission(path, data, stem, student_of(path, notebook, stem), definitions(cells))


def _submissions(paths: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            found.append(path)
    return found


def grade(paths: Iterable[str], timeout: float = DEFAULT_TIMEOUT, jobs: int = 2,
          seed: int | None = None) -> list[Row]:
    """Grade every notebook in ``paths`` (files or folders): ``jobs`` sandboxes at a
    time, each exercise within ``timeout`` seconds, cases drawn from ``seed``."""
    from .checker import check_in_sandbox

    run_seed = secrets.randbits(32) if seed is None else seed
    read = [_read(p) for p in _submissions(paths)]  # every file, before any code runs
    work: list[tuple[Submission, Exercise, int]] = []
    for sub in read:
        if isinstance(sub, Submission) and sub.stem:
            work += [(sub, e, exercise_seed(run_seed, sub.student, e.key))
                     for e in for_notebook(sub.stem)]

    folders = sorted({sub.path.resolve().parent for sub in read if isinstance(sub, Submission)})

    def one(item: tuple[Submission, Exercise, int]) -> Row:
        sub, exercise, exercise_seed_ = item
        found = check_in_sandbox(exercise, sub.data, sub.cells, exercise_seed_, timeout,
                                 hide=folders)
        return Row(sub.student, str(sub.path), exercise.key, int(found["points"]),
                   int(found["max"]), str(found["hint"]), exercise_seed_)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = iter(list(pool.map(one, work)))
    rows: list[Row] = []
    for sub in read:
        if isinstance(sub, Row):
            rows.append(sub)
        elif sub.stem is None:
            rows.append(Row(sub.student, str(sub.path), "?", 0, 0,
                            "not a course notebook with exercises (no wskit.notebook metadata "
                            "and no course notebook name in the file name)"))
        else:
            rows += [next(done) for _ in for_notebook(sub.stem)]
    return rows


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with ``= + - @``, a tab or
    a carriage return gets a leading ``'`` (OWASP's advice on CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "submission", "exercise", "points", "max", "seed", "hint"])
        for r in rows:
            writer.writerow([safe_cell(v) for v in
                             (r.student, r.submission, r.exercise, r.points, r.max, r.seed, r.hint)])


def write_json(rows: Sequence[Row], path: Path, run_seed: int | None, isolation: str) -> None:
    path.write_text(json.dumps({"seed": run_seed, "isolation": isolation,
                                "rows": [asdict(r) for r in rows]}, indent=1) + "\n",
                    encoding="utf-8")


def write_feedback(rows: Sequence[Row], folder: Path) -> list[Path]:
    """One HTML page per submission: each exercise's points, what went wrong and the
    hint, and the total. Named after the student (and the notebook)."""
    from .exercises import _find

    folder.mkdir(parents=True, exist_ok=True)
    by_submission: dict[str, list[Row]] = {}
    for r in rows:
        by_submission.setdefault(r.submission, []).append(r)
    written = []
    for submission, own in by_submission.items():
        student = own[0].student
        lines = []
        for r in own:
            title = ""
            with_key = [e for e in EXERCISES if e.key == r.exercise]
            if with_key:
                title = _find(r.exercise).title
            verdict = "done" if r.points and r.points == r.max else "not yet"
            lines.append(f"<tr><td>{html.escape(r.exercise)}</td><td>{html.escape(title)}</td>"
                         f"<td>{r.points}/{r.max}</td><td>{verdict}</td>"
                         f"<td>{html.escape(r.hint) or '&#10003;'}</td></tr>")
        got, of = sum(r.points for r in own), sum(r.max for r in own)
        page = ("<!doctype html><meta charset='utf-8'>"
                f"<title>Feedback: {html.escape(student)}</title>"
                "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
                "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}"
                "table{border-collapse:collapse}</style>"
                f"<h1>{html.escape(student)}</h1><p>{html.escape(Path(submission).name)}: "
                f"<b>{got} of {of} points</b></p><table><tr><th>exercise</th><th></th>"
                "<th>points</th><th></th><th>what the check saw, and a hint</th></tr>"
                + "".join(lines) + "</table>")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(submission).stem).strip("._")[:120] or "x"
        target, n = folder / f"{name}.html", 1
        while target in written:  # two submissions with one file name, in two folders
            n += 1
            target = folder / f"{name}-{n}.html"
        target.write_text(page, encoding="utf-8")
        written.append(target)
    return written


def format_table(rows: Sequence[Row], width: int = 70) -> str:
    """Student, exercise, points, max and the first failing hint, one row each,
    then each submission's total."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    name_w = max([len("student")] + [len(r.student) for r in rows])
    lines = [f"{'student':<{name_w}}  exercise  points  max  seed        hint"]
    for r in rows:
        lines.append(f"{r.student:<{name_w}}  {r.exercise:<8}  {r.points:>6}  {r.max:>3}  "
                     f"{r.seed if r.seed is not None else '':<10}  {cut(r.hint)}")
    totals: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        got = totals.setdefault((r.student, r.submission), [0, 0])
        got[0] += r.points
        got[1] += r.max
    lines.append("")
    lines += [f"{student:<{name_w}}  total {got}/{of}  ({Path(sub).name})"
              for (student, sub), (got, of) in totals.items()]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="submitted notebooks or folders")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="also write student,submission,exercise,points,max,seed,hint")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the rows, the run's seed and the isolation used, as JSON")
    p.add_argument("--feedback", default=None, metavar="DIR",
                   help="write one HTML page per submission: points and hints")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"each exercise's check, sandbox included (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="sandboxes side by side (default 2)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="the run's seed (printed; give it again to draw the same cases)")


def run(args: argparse.Namespace) -> int:
    from .sandbox import isolation

    seed = secrets.randbits(32) if args.seed is None else args.seed
    rows = grade(args.paths, timeout=args.timeout, jobs=args.jobs, seed=seed)
    mode = isolation()
    print(f"run seed {seed} (regrade: --seed {seed}); sandbox isolation: {mode}")
    print(format_table(rows), flush=True)
    if args.csv:
        write_csv(rows, Path(args.csv))
    if args.json:
        write_json(rows, Path(args.json), seed, mode)
    if args.feedback:
        write_feedback(rows, Path(args.feedback))
    return 0
