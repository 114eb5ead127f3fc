"""``python -m wskit grade``: collected notebooks scored by running the checks itself.

One grading run (module fixture) over the course's exercise notebooks with their
solutions, their student copies, a copy with one broken solution, and a student
copy whose check cells were replaced by printed success lines.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wskit.course.exercises import EXERCISES, for_notebook
from wskit.course.grading import Row, grade, notebook_of
from wskit.course.teaching import student_copy

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WITH_EXERCISES = sorted({e.notebook for e in EXERCISES})

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.timeout(600)]


def _load(stem: str) -> dict:
    return json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))


def _write(folder: Path, name: str, nb: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def _broken_typing_tracker() -> dict:
    """The solutions, with exercise 5.3's answer off by one rule (never throttles)."""
    nb = _load("05_exercises")
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if "solution" in cell["metadata"].get("tags", []) and "class TypingTracker" in text:
            cell["source"] = text.replace("now - self.announced[key] < self.throttle", "False")
            return nb
    raise AssertionError("no TypingTracker solution in notebook 05")


def _faked_student_copy() -> dict:
    """A student copy whose check cells print what a passing check prints."""
    nb = student_copy(_load("05_exercises"))
    for cell in nb["cells"]:
        if "check" in cell["metadata"].get("tags", []):
            cell["source"] = 'print("✓ Exercise passed")\n'
            cell["metadata"]["tags"] = []  # and no longer marked as a check
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Row]]:
    folder = tmp_path_factory.mktemp("submissions")
    names = {}
    for stem in WITH_EXERCISES:
        names[f"solutions-{stem}"] = _write(folder, f"solutions-{stem}.ipynb", _load(stem))
        names[f"student-{stem}"] = _write(folder, f"student-{stem}.ipynb",
                                          student_copy(_load(stem)))
    names["broken"] = _write(folder, "broken-05_exercises.ipynb", _broken_typing_tracker())
    faked = _faked_student_copy()
    faked["metadata"].pop("wskit")  # identified by its file name instead
    names["faked"] = _write(folder, "faked-05_exercises.ipynb", faked)
    rows = grade([str(p) for p in names.values()], timeout=240, jobs=2)
    by_path = {str(p): key for key, p in names.items()}
    out: dict[str, list[Row]] = {key: [] for key in names}
    for row in rows:
        out[by_path[row.submission]].append(row)
    return out


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_the_solutions_score_full_marks(graded: dict[str, list[Row]], stem: str) -> None:
    rows = graded[f"solutions-{stem}"]
    assert [r.exercise for r in rows] == [e.key for e in for_notebook(stem)]
    assert all(r.points == r.max > 0 and r.hint == "" for r in rows), rows


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_the_student_copy_scores_zero_with_hints(graded: dict[str, list[Row]], stem: str) -> None:
    rows = graded[f"student-{stem}"]
    assert len(rows) == len(for_notebook(stem))
    assert all(r.points == 0 and "not implemented yet" in r.hint for r in rows), rows


def test_one_broken_solution_loses_exactly_its_points(graded: dict[str, list[Row]]) -> None:
    rows = {r.exercise: r for r in graded["broken"]}
    full = {r.exercise: r for r in graded["solutions-05_exercises"]}
    assert rows["5.3"].points == 0 and "throttle" in rows["5.3"].hint
    assert sum(r.points for r in rows.values()) == sum(r.points for r in full.values()) \
        - full["5.3"].max


def test_printed_success_lines_score_nothing(graded: dict[str, list[Row]]) -> None:
    rows = graded["faked"]
    assert [r.exercise for r in rows] == [e.key for e in for_notebook("05_exercises")]
    assert all(r.points == 0 for r in rows), rows


@pytest.mark.timeout(120)
def test_a_hung_notebook_is_cut_off_and_scored(tmp_path: Path) -> None:
    """A cell that never returns, with a server started first that is never stopped:
    the run is cut off at its timeout, the kernel with its server goes, and the
    exercise defined before the hang still scores."""
    nb = {"cells": [], "metadata": {"wskit": {"notebook": "07_recovery"}},
          "nbformat": 4, "nbformat_minor": 5}
    sources = [
        "import wskit, time\nserver = await wskit.serve('aiohttp', name='forever', "
        "backplane='none')\nprint(server.url)",
        "def backoff_delay(attempt, base, cap, rng):\n"
        "    return rng.uniform(0, min(cap, base * 2 ** attempt))",
        "while True:\n    time.sleep(1)",
        "def merge(replayed, buffered, top):\n    return replayed",
    ]
    for n, source in enumerate(sources):
        nb["cells"].append({"cell_type": "code", "id": f"c{n}", "metadata": {}, "outputs": [],
                            "execution_count": None, "source": source})
    path = _write(tmp_path, "hung.ipynb", nb)
    rows = {r.exercise: r for r in grade([str(path)], timeout=8, jobs=1)}
    assert rows["7.1"].points == rows["7.1"].max
    assert rows["7.2"].points == 0 and "cut off after 8 s" in rows["7.2"].hint


@pytest.mark.timeout(120)
def test_the_command_prints_a_table_and_writes_the_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "alice-07_recovery.ipynb", student_copy(_load("07_recovery")))
    out = tmp_path / "scores.csv"
    done = subprocess.run([sys.executable, "-m", "wskit", "grade", str(path), "--csv", str(out),
                           "--timeout", "60"], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    assert "submission" in done.stdout and "7.1" in done.stdout and "total 0/3" in done.stdout
    with out.open(encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["submission", "exercise", "points", "max", "hint"]
    assert [row[1:4] for row in table[1:]] == [["7.1", "0", "1"], ["7.2", "0", "2"]]
    assert all("not implemented yet" in row[4] for row in table[1:])


def test_which_notebook_a_submission_is() -> None:
    assert notebook_of(Path("x.ipynb"), {"metadata": {"wskit": {"notebook": "05_exercises"}}}) \
        == "05_exercises"
    assert notebook_of(Path("bob-07_recovery (1).ipynb"), {}) == "07_recovery"
    assert notebook_of(Path("essay.ipynb"), {}) is None
