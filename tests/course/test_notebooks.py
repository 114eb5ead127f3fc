"""Every notebook runs headless in a fresh kernel; student copies fail only their checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from wskit.course.exercises import EXERCISES as ALL_EXERCISES
from wskit.course.exercises import for_notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = 90

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def _execute(path: Path, allow_errors: bool = False):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _errors(nb) -> list[tuple[str, dict]]:
    return [(cell.source, out) for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def test_the_notebooks_are_in_course_order() -> None:
    assert [n[:2] for n in ALL] == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]


def _committed(name: str) -> str:
    """The notebook as committed (git's HEAD), so that a learner who ran and saved
    the notebooks does not fail this test on their own working copy; the working
    file where there is no git checkout (or the file is new)."""
    import subprocess

    try:
        return subprocess.run(["git", "show", f"HEAD:notebooks/{name}"], cwd=NOTEBOOKS,
                              capture_output=True, check=True, text=True,
                              encoding="utf-8").stdout
    except (OSError, subprocess.CalledProcessError):
        return (NOTEBOOKS / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ALL)
def test_committed_without_outputs(name: str) -> None:
    nb = json.loads(_committed(name))
    dirty = [c.get("id") for c in nb["cells"] if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{name}: clear the outputs of cells {dirty}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_top_to_bottom(name: str) -> None:
    started = time.monotonic()
    nb = _execute(NOTEBOOKS / name)
    assert not _errors(nb)
    # planned faults print as plain output: nothing lands in Jupyter's red stderr box
    stderr = [(c.source[:60], o.get("text", "")[:200]) for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, stderr
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.get("outputs", []))
    # every notebook ends on a check the reader runs
    assert "✓" in text or "5 of 5 exercises done" in text, text
    print(f"{name}: {time.monotonic() - started:.1f}s")


#: notebooks with exercises: how many checks each has (from the course's registry)
EXERCISES = {f"{stem}.ipynb": len(for_notebook(stem)) for stem in {e.notebook for e in ALL_EXERCISES}}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_student_copy_fails_exactly_its_checks_with_hints(tmp_path: Path, name: str) -> None:
    from wskit.course import questions
    from wskit.course.teaching import is_answer_cell, is_solution_cell, write_student_copies

    checks = EXERCISES[name]
    asked = len(questions.for_notebook(name))
    instructor = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    solutions = [c for c in instructor["cells"] if is_solution_cell(c)]
    answers = [c for c in instructor["cells"] if is_answer_cell(c)]
    assert len(solutions) == checks and len(answers) == (1 if asked else 0)
    (copy,) = write_student_copies(NOTEBOOKS, tmp_path, names={name})
    student = json.loads(copy.read_text(encoding="utf-8"))
    assert not any(is_solution_cell(c) or is_answer_cell(c) for c in student["cells"])
    assert len(student["cells"]) == len(instructor["cells"]) - len(solutions) - len(answers)

    nb = _execute(copy, allow_errors=True)
    errors = _errors(nb)
    assert len(errors) == checks + asked, [e[1]["ename"] for e in errors]
    for source, out in errors:
        assert "exercises.check_" in source or "questions.check(" in source  # only the checks fail
        assert out["ename"] == "ExerciseFailed"
        assert ("not implemented yet" in out["evalue"] or "not answered yet" in out["evalue"]) \
            and "Hint: " in out["evalue"]
    last = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    assert "0 of 5 exercises done" in last if name.startswith("05") else "✓" in last


def test_other_notebooks_have_no_solution_cells() -> None:
    from wskit.course.teaching import is_solution_cell

    for name in ALL:
        if name in EXERCISES:
            continue
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        assert not any(is_solution_cell(c) for c in nb["cells"]), name


def test_the_course_has_ten_exercises_or_more_each_with_a_check_cell() -> None:
    assert len(ALL_EXERCISES) >= 10
    for exercise in ALL_EXERCISES:
        nb = json.loads((NOTEBOOKS / f"{exercise.notebook}.ipynb").read_text(encoding="utf-8"))
        assert nb["metadata"]["wskit"]["notebook"] == exercise.notebook
        sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        assert f'exercises.about("{exercise.key}")' in sources, exercise.key
        checks = [c for c in nb["cells"] if "check" in c["metadata"].get("tags", [])
                  and exercise.check.__name__ in "".join(c["source"])]
        assert checks, f"{exercise.key}: no cell tagged 'check' calls {exercise.check.__name__}"
        assert len(exercise.hints) >= 2 and exercise.minutes > 0


@pytest.mark.timeout(120)
def test_the_rendered_course_holds_the_outputs(tmp_path: Path) -> None:
    """``python -m wskit course-html`` (CI builds the whole course): one notebook here."""
    from wskit.course.html import build_html

    pages = build_html(NOTEBOOKS, tmp_path, names=["00_start_here.ipynb"])
    assert [p.name for p in pages] == ["00_start_here.html", "index.html"]
    page = pages[0].read_text(encoding="utf-8")
    assert "✓ two clients chatted through a server running inside this notebook" in page
    assert "HTTP/1.1 101 Switching Protocols" in page  # an output, not only the source
    assert 'href="00_start_here.html"' in pages[1].read_text(encoding="utf-8")


def test_every_live_cell_has_a_recorded_output(capsys: pytest.CaptureFixture[str]) -> None:
    """08's cluster cells and 09's nginx cell show a labelled recording where the tool is absent."""
    from wskit.course import recorded

    live = {(name, c["id"]) for name in ALL
            for c in json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
            if recorded.LIVE_TAG in c["metadata"].get("tags", [])}
    assert {n for n, _ in live} == {"08_scale_presence.ipynb", "09_deployment.ipynb"}
    for name, cell_id in sorted(live):
        recording = recorded.load(name)
        assert recording["cells"][cell_id].strip(), (name, cell_id)
        source = "".join(next(c["source"] for c in json.loads(
            (NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"] if c["id"] == cell_id))
        assert f'recorded.show("{name[:-6]}", "{cell_id}"' in source, (name, cell_id)
        recorded.show(name[:-6], cell_id, "the tool is not installed here")
        shown = capsys.readouterr().out
        assert shown.startswith("┌ RECORDED OUTPUT. the tool is not installed here")
        assert all(f"│ {line}" in shown for line in recording["cells"][cell_id].splitlines())


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("name", "absent"), [("08_scale_presence.ipynb", "HAVE_REDIS_SERVER = False"),
                                              ("09_deployment.ipynb", "find_nginx = lambda: None")])
def test_without_the_tool_the_live_cells_show_recordings(name: str, absent: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source += f"\n{absent}  # as if the tool were not installed"
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert not _errors(nb)
    live = [c for c in nb.cells if "live" in c.metadata.get("tags", [])]
    assert live and all("RECORDED OUTPUT" in "".join(o.get("text", "") for o in c.outputs)
                        for c in live)
    assert "✓" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)


def test_every_predict_prompt_stands_alone_then_a_guess_then_the_run() -> None:
    """A prompt is its cell's last paragraph (nothing after it gives the answer away),
    then a cell for the learner's guess, then the code to run."""
    import re

    prompts = 0
    for name in ALL:
        cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
        text = ["".join(c["source"]) for c in cells]
        for i, cell in enumerate(cells):
            if cell["cell_type"] != "markdown" or not re.search(r"(?i)\*+predict", text[i]):
                continue
            prompts += 1
            last = text[i].strip().split("\n\n")[-1]
            assert last.startswith("**Predict, then "), (name, cell["id"], last[:60])
            assert text[i + 1].startswith("**Your prediction**"), (name, cell["id"])
            assert cells[i + 2]["cell_type"] == "code", (name, cell["id"])
    assert prompts >= 20, prompts
