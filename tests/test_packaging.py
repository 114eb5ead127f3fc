"""environment.yml stays in step with pyproject.toml."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"redis": "redis-py", "matplotlib": "matplotlib-base"}
NOT_ON_CONDA: set[str] = set()


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower()


def test_environment_yml_lists_every_pyproject_dependency() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("test", "lab"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    env = (ROOT / "environment.yml").read_text()
    listed = {_name(m) for m in re.findall(r"^\s+- ([A-Za-z][\w.-]*\S*)\s*$", env, re.M)}
    missing = {CONDA_NAMES.get(n, n) for n in wanted - NOT_ON_CONDA} - listed
    assert not missing, f"environment.yml lacks {sorted(missing)}"
    assert re.search(r"^\s+- -e \.\s*$", env, re.M), "environment.yml must pip-install -e ."
