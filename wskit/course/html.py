"""A rendered copy of the course: every notebook executed in a fresh kernel, then
written as static HTML with its outputs and plots, for reading without running.

    python -m wskit course-html [--notebooks notebooks] [--out build/course]

Each notebook runs as a learner would run it (fakeredis, no ``WSKIT_REDIS_URL``
unless the caller sets one); a notebook that fails stops the build with the
failing cell named, so a published copy never shows an error the course does
not plan.
"""

from __future__ import annotations

import argparse
import html
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_html", "add_arguments", "run"]


def _execute(path: Path, timeout: int) -> object:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def build_html(source: Path, out: Path, names: Sequence[str] | None = None,
               timeout: int = 300) -> list[Path]:
    """Execute the notebooks in ``source`` (all, or ``names``) and write one HTML
    page each, plus ``index.html``, into ``out``. Returns the pages written."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()  # images are embedded: the folder stands alone
    out.mkdir(parents=True, exist_ok=True)
    pages: list[Path] = []
    rows = []
    for path in sorted(source.glob("*.ipynb")):
        if names is not None and path.name not in names:
            continue
        started = time.monotonic()
        nb = _execute(path, timeout)
        body, _ = exporter.from_notebook_node(nb)  # type: ignore[arg-type]
        page = out / f"{path.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells  # type: ignore[attr-defined]
                      if c.cell_type == "markdown" and c.source.startswith("#")), path.stem)
        rows.append(f'<li><a href="{page.name}">{html.escape(title)}</a> '
                    f"<small>(ran in {time.monotonic() - started:.0f} s)</small></li>")
        print(f"{page}  ({time.monotonic() - started:.1f} s)", flush=True)
    index = out / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>wskit: the course</title>"
                     "<h1>wskit: the course, executed</h1><ol>" + "".join(rows) + "</ol>\n",
                     encoding="utf-8")
    return pages + [index]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks")
    p.add_argument("--out", default="build/course", help="where the HTML goes")
    p.add_argument("--timeout", type=int, default=300, help="per cell, in seconds")


def run(args: argparse.Namespace) -> int:
    build_html(Path(args.notebooks), Path(args.out), timeout=args.timeout)
    return 0
