"""Every notebook runs headless in a fresh kernel; student copies fail only their checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
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
    assert [n[:2] for n in ALL] == ["00", "01", "02", "03", "04", "05", "06", "07", "08"]


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
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.get("outputs", []))
    # every notebook ends on a check the reader runs
    assert "✓" in text or "5 of 5 exercises done" in text, text
    print(f"{name}: {time.monotonic() - started:.1f}s")


#: notebooks with exercises: how many checks each has
EXERCISES = {"05_exercises.ipynb": 5, "07_recovery.ipynb": 2, "08_scale_presence.ipynb": 1}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_student_copy_fails_exactly_its_checks_with_hints(tmp_path: Path, name: str) -> None:
    from wskit.teaching import is_solution_cell, write_student_copies

    checks = EXERCISES[name]
    instructor = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    solutions = [c for c in instructor["cells"] if is_solution_cell(c)]
    assert len(solutions) == checks
    (copy,) = write_student_copies(NOTEBOOKS, tmp_path, names={name})
    student = json.loads(copy.read_text(encoding="utf-8"))
    assert not any(is_solution_cell(c) for c in student["cells"])
    assert len(student["cells"]) == len(instructor["cells"]) - len(solutions)

    nb = _execute(copy, allow_errors=True)
    errors = _errors(nb)
    assert len(errors) == checks, [e[1]["ename"] for e in errors]
    for source, out in errors:
        assert "exercises.check_" in source  # only the checks fail
        assert out["ename"] == "ExerciseFailed"
        assert "not implemented yet" in out["evalue"] and "Hint: " in out["evalue"]
    last = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []))
    assert "0 of 5 exercises done" in last if name.startswith("05") else "✓" in last


def test_other_notebooks_have_no_solution_cells() -> None:
    from wskit.teaching import is_solution_cell

    for name in ALL:
        if name in EXERCISES:
            continue
        nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        assert not any(is_solution_cell(c) for c in nb["cells"]), name
