"""A rendered copy of the course: every notebook executed in a fresh kernel, then
written as static HTML with its outputs and plots, for reading without running.

    python -m wskit course-html [--notebooks notebooks] [--out build/course]
                                [--edition teacher|student]

Each notebook runs as a learner would run it (fakeredis, no ``WSKIT_REDIS_URL``
unless the caller sets one).

* ``--edition teacher`` (the default) renders the notebooks as they are,
  solutions included; a notebook that fails stops the build with the failing
  cell named, so a published copy never shows an error the course does not plan.
* ``--edition student`` renders the student copies
  (:func:`~wskit.course.teaching.student_copy`: no solution cells, the last hint
  withheld). Their check cells are *expected* to fail (nothing is solved yet):
  each is shown as such, with the check's one-line message and hint and no
  traceback (a traceback would quote the checks' own source), and does not stop
  the build; any other failure still does.
"""

from __future__ import annotations

import argparse
import html
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import WskitError

__all__ = ["build_html", "add_arguments", "run", "EDITIONS", "UnplannedFailure"]

EDITIONS = ("teacher", "student")

#: the note put after a check that fails in the student edition, as planned
EXPECTED_TO_FAIL = ("*Expected to fail in the student edition:* this check passes once you "
                    "have done the exercise, or answered the question, above it.")


class UnplannedFailure(WskitError):
    """A student copy failed somewhere other than in a check cell."""


def _execute(path: Path, timeout: int, cwd: Path, allow_errors: bool = False) -> Any:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _mark_expected_failures(nb: Any, name: str) -> int:
    """Shorten each failing check's error to its message, put a note after it, and
    raise :class:`UnplannedFailure` if a cell that is not a check failed."""
    import nbformat

    cells = []
    failed = 0
    for cell in nb.cells:
        cells.append(cell)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            continue
        if "check" not in cell.get("metadata", {}).get("tags", []):
            first = cell.source.splitlines()[0] if cell.source else ""
            raise UnplannedFailure(f"{name}: a cell that is not a check failed ({first!r}): "
                                   f"{errors[0].get('ename')}: {errors[0].get('evalue')}")
        for error in errors:
            error["traceback"] = [f"{error.get('ename')}: {error.get('evalue')}"]
        cells.append(nbformat.v4.new_markdown_cell(EXPECTED_TO_FAIL))
        failed += 1
    nb.cells = cells
    return failed


def build_html(source: Path, out: Path, names: Sequence[str] | None = None,
               timeout: int = 300, edition: str = "teacher") -> list[Path]:
    """Execute the notebooks in ``source`` (all, or ``names``) and write one HTML
    page each, plus ``index.html``, into ``out``. Returns the pages written.

    ``edition="student"`` renders their student copies instead (see the module's
    docstring); they run with ``source`` as the working directory, as the
    originals do."""
    from nbconvert import HTMLExporter

    from .teaching import write_student_copies

    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, not {edition!r}")
    exporter = HTMLExporter()  # images are embedded: the folder stands alone
    out.mkdir(parents=True, exist_ok=True)
    pages: list[Path] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="wskit-student-") as scratch:
        paths = sorted(source.glob("*.ipynb"))
        if names is not None:
            paths = [p for p in paths if p.name in names]
        if edition == "student":
            paths = write_student_copies(source, Path(scratch), names=[p.name for p in paths])
        for path in paths:
            started = time.monotonic()
            nb = _execute(path, timeout, cwd=source.resolve(), allow_errors=edition == "student")
            note = ""
            if edition == "student":
                failed = _mark_expected_failures(nb, path.name)
                note = f", {failed} check{'s' if failed != 1 else ''} left to solve" if failed else ""
            body, _ = exporter.from_notebook_node(nb)
            page = out / f"{path.stem}.html"
            page.write_text(body, encoding="utf-8")
            pages.append(page)
            title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells
                          if c.cell_type == "markdown" and c.source.startswith("#")), path.stem)
            rows.append(f'<li><a href="{page.name}">{html.escape(title)}</a> '
                        f"<small>(ran in {time.monotonic() - started:.0f} s{note})</small></li>")
            print(f"{page}  ({time.monotonic() - started:.1f} s{note})", flush=True)
    heading = "the course, executed" + (" (student edition: no solutions)"
                                        if edition == "student" else "")
    index = out / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>wskit: the course</title>"
                     f"<h1>wskit: {html.escape(heading)}</h1><ol>" + "".join(rows) + "</ol>\n",
                     encoding="utf-8")
    (out / "edition.json").write_text(json.dumps({"edition": edition}) + "\n", encoding="utf-8")
    return pages + [index]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks")
    p.add_argument("--out", default="build/course", help="where the HTML goes")
    p.add_argument("--timeout", type=int, default=300, help="per cell, in seconds")
    p.add_argument("--edition", choices=EDITIONS, default="teacher",
                   help="teacher: the notebooks as they are, solutions included; student: "
                        "their student copies, checks shown failing, no solution anywhere")


def run(args: argparse.Namespace) -> int:
    build_html(Path(args.notebooks), Path(args.out), timeout=args.timeout, edition=args.edition)
    return 0
