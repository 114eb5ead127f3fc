"""The student edition (``student-copies``, ``course-html --edition student``) holds
no solution: no solution cell's code, no withheld last hint, no check's traceback."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from wskit.course.exercises import EXERCISES
from wskit.course.teaching import (
    STUDENT_EDITION,
    is_answer_cell,
    is_solution_cell,
    student_copy,
    write_student_copies,
)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _hidden(cell: dict) -> bool:
    return is_solution_cell(cell) or is_answer_cell(cell)


def _solution_lines(name: str) -> set[str]:
    """Every line of the notebook's solution (and answer) cells that no other cell of
    it has (a stub repeats the solution's ``def`` line; that line gives nothing away)."""
    cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    elsewhere = {line.strip() for c in cells if not _hidden(c) for line in _source(c).splitlines()}
    return {line.strip() for c in cells if _hidden(c) for line in _source(c).splitlines()
            if line.strip() and line.strip() not in elsewhere
            and line.strip() not in ("# SOLUTION", "# ANSWER")}


def _withheld_hints(name: str) -> list[str]:
    return [e.hints[-1] for e in EXERCISES if f"{e.notebook}.ipynb" == name]


def _visible_text(page: str) -> str:
    """What a reader of the HTML sees: no styles or scripts, no tags, entities decoded."""
    page = re.sub(r"(?is)<(style|script)\b.*?</\1>", "", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _leaks(text: str, name: str) -> list[str]:
    """The solution lines found as whole lines of ``text``, and the withheld hints found in it."""
    lines = {line.strip() for line in text.splitlines()}
    return ([line for line in _solution_lines(name) if line in lines]
            + [hint for hint in _withheld_hints(name) if hint in text])


def test_the_grep_finds_what_it_looks_for() -> None:
    """The teacher's notebooks leak by definition: the grep must see that, or it proves nothing."""
    for name in ("01_aiohttp_manager.ipynb", "04_heartbeats.ipynb", "05_exercises.ipynb",
                 "07_recovery.ipynb"):
        cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
        assert _solution_lines(name) and _leaks("\n".join(_source(c) for c in cells), name)


@pytest.mark.parametrize("name", ALL)
def test_student_copies_hold_no_solution(tmp_path: Path, name: str) -> None:
    (copy,) = write_student_copies(NOTEBOOKS, tmp_path, names={name})
    text = copy.read_text(encoding="utf-8")
    nb = json.loads(text)
    assert not _leaks("\n".join(_source(c) for c in nb["cells"]), name)
    assert nb["metadata"]["wskit"]["edition"] == STUDENT_EDITION
    assert not any(_hidden(c) for c in nb["cells"])
    assert not any("exercises.about(" in _source(c) for c in nb["cells"])  # hints come from student_about
    assert not any(re.search(r"(?m)^\**Hints?\b", _source(c)) for c in nb["cells"]
                   if c["cell_type"] == "markdown")


def test_the_student_hints_withhold_only_the_last() -> None:
    from wskit.course.teaching import student_about

    for exercise in EXERCISES:
        shown = student_about(exercise.key)
        text, page = repr(shown), shown._repr_html_()
        assert exercise.hints[-1] not in text and html.escape(exercise.hints[-1]) not in page
        assert all(h in text for h in exercise.hints[:-1]), exercise.key
        assert "ask your teacher" in text


def test_a_failure_outside_the_checks_stops_the_student_build() -> None:
    import nbformat

    from wskit.course.html import UnplannedFailure, _mark_expected_failures

    error = nbformat.v4.new_output("error", ename="ExerciseFailed", evalue="7.1: not implemented yet",
                                   traceback=["...the check's own source..."])
    check = nbformat.v4.new_code_cell("exercises.check_full_jitter(backoff_delay)",
                                      metadata={"tags": ["check"]}, outputs=[error])
    nb = nbformat.v4.new_notebook(cells=[check])
    assert _mark_expected_failures(nb, "x.ipynb") == 1
    assert nb.cells[0].outputs[0]["traceback"] == ["ExerciseFailed: 7.1: not implemented yet"]
    assert "Expected to fail" in nb.cells[1].source
    other = nbformat.v4.new_code_cell("1 / 0", outputs=[nbformat.v4.new_output(
        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])
    with pytest.raises(UnplannedFailure, match="ZeroDivisionError"):
        _mark_expected_failures(nbformat.v4.new_notebook(cells=[other]), "x.ipynb")


def test_student_copy_keeps_cells_and_tags() -> None:
    """The grader and the suite find the check cells in a copy by their tags and ids."""
    for name in ALL:
        teacher = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        copy = student_copy(teacher)
        kept = [c for c in teacher["cells"] if not _hidden(c)]
        assert [(c.get("id"), c["metadata"].get("tags")) for c in copy["cells"]] == \
               [(c.get("id"), c["metadata"].get("tags")) for c in kept]


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(240)
def test_the_student_html_holds_no_solution(tmp_path: Path) -> None:
    """``course-html --edition student`` on three notebooks with exercises or questions
    (CI builds all)."""
    from wskit.course import questions
    from wskit.course.html import EXPECTED_TO_FAIL, build_html

    names = ["04_heartbeats.ipynb", "05_exercises.ipynb", "07_recovery.ipynb"]
    pages = build_html(NOTEBOOKS, tmp_path, names=names, edition="student")
    assert [p.name for p in pages] == [n.replace(".ipynb", ".html") for n in names] + ["index.html"]
    for name, page in zip(names, pages):
        raw = page.read_text(encoding="utf-8")
        text = _visible_text(raw)
        assert not _leaks(text, name), name
        assert "Traceback" not in text and "reliability.py" not in text and "chat.py" not in text
        checks = (sum(1 for e in EXERCISES if f"{e.notebook}.ipynb" == name)
                  + len(questions.for_notebook(name)))
        assert text.count(EXPECTED_TO_FAIL.replace("*", "")) == checks, name
        assert "not implemented yet" in text and "your teacher" in text
    assert "student edition" in pages[-1].read_text(encoding="utf-8")
