"""wskit.core is sans-I/O: no event loop, no framework, no Redis client in it.

Every module of the folder is scanned, including ones added later, so that the
rules there (the protocol, the hub, history, rate limits, reconnect policy, the
client's room tracker) stay testable in memory and usable from any runtime.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wskit.core

FORBIDDEN = {"asyncio", "aiohttp", "starlette", "fastapi", "uvicorn", "redis", "uvloop"}
CORE = Path(wskit.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))


def imported_roots(source: str) -> set[str]:
    """The top-level package of every import in ``source`` (a relative one is wskit)."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add("wskit" if node.level else (node.module or "").split(".")[0])
        elif isinstance(node, ast.Call) and node.args and _is_import_call(node.func):
            first = node.args[0]  # importlib.import_module("x"), __import__("x")
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                roots.add(first.value.split(".")[0])
    return roots


def _is_import_call(func: ast.expr) -> bool:
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module")
            or (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")))


def test_the_scan_sees_every_core_module() -> None:
    names = {p.stem for p in MODULES}
    assert {"protocol", "hub", "history", "ratelimit", "reconnect", "tracker"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_io(path: Path) -> None:
    bad = imported_roots(path.read_text(encoding="utf-8")) & FORBIDDEN
    assert not bad, f"wskit/core/{path.relative_to(CORE)} imports {sorted(bad)}: core is sans-I/O"


def test_core_imports_nothing_of_wskit_but_core_and_exceptions() -> None:
    """A relative import may only reach .core itself or wskit.exceptions (no I/O layer)."""
    for path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert node.module == "exceptions", (path.name, node.module)


def test_the_scan_would_catch_an_import() -> None:
    """The checker itself: each way of importing is seen."""
    sample = ("import asyncio.events\nfrom aiohttp import web\nimport importlib\n"
              "def later():\n    from starlette import websockets\n"
              "importlib.import_module('redis.asyncio')\n__import__('uvicorn')\n"
              "from . import protocol\n")
    assert imported_roots(sample) == {"asyncio", "aiohttp", "importlib", "starlette", "redis",
                                      "uvicorn", "wskit"}
