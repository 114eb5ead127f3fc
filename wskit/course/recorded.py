"""Recorded outputs: what a notebook's live cells printed where the tools were installed.

Notebook 08 starts a Redis Cluster (``redis-server``) and 09 an nginx in front of
two instances. Where those are not installed, the same cells show what they
printed on a machine that had them, labelled as recorded (with where and when),
instead of a sentence saying the section was skipped. Cells tagged ``live`` are
recorded; re-record after changing one (with the tools installed)::

    python -m wskit.course.recorded notebooks/08_scale_presence.ipynb notebooks/09_deployment.ipynb

The recordings are package data (``wskit/course/recorded/``), so a student
edition installed from a wheel has them too.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["LIVE_TAG", "show", "load", "record"]

LIVE_TAG = "live"
_HERE = Path(__file__).with_name("recorded")


def load(notebook: str) -> dict[str, Any]:
    """The recording of ``notebook`` (its file name without ``.ipynb``)."""
    path = _HERE / f"{notebook.removesuffix('.ipynb')}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def show(notebook: str, cell_id: str, missing: str) -> None:
    """Print the recorded output of one cell, labelled; ``missing`` names what is not
    installed here (and how to install it)."""
    try:
        recording = load(notebook)
        text = recording["cells"][cell_id]
    except (OSError, KeyError, ValueError):
        print(f"{missing}; no recorded output of this cell either")
        return
    print(f"┌ RECORDED OUTPUT. {missing}, so this is what this cell printed where it "
          f"was ({recording['machine']}, {recording['date']}):")
    for line in text.rstrip("\n").splitlines():
        print("│ " + line)
    print("└ end of the recorded output")


def _text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def record(path: Path, timeout: int = 300) -> Path:
    """Execute the notebook and store the stdout of its cells tagged ``live``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    cells = {c.get("id"): _text(c) for c in nb.cells
             if LIVE_TAG in c.get("metadata", {}).get("tags", [])}
    if not all(cells.values()):
        raise RuntimeError(f"{path.name}: a live cell printed nothing; are the tools installed?")
    _HERE.mkdir(exist_ok=True)
    out = _HERE / f"{path.stem}.json"
    out.write_text(json.dumps({"machine": f"{platform.system()} {platform.machine()}, "
                                          f"Python {platform.python_version()}",
                               "date": time.strftime("%Y-%m-%d"), "cells": cells},
                              indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(record(Path(arg)))
