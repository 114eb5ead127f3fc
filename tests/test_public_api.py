"""Every public import the README documents works: the README's block is run as is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def public_block() -> str:
    """The ```python block under the README's "Public imports" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Public imports", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no ```python block under '## Public imports'"
    return match.group(1)


def statements() -> list[str]:
    """The block's import statements, one each (a parenthesised one spans lines)."""
    out, current = [], ""
    for line in public_block().splitlines():
        current += line.split("#", 1)[0].rstrip() + "\n"
        if current.count("(") == current.count(")"):
            if current.strip():
                out.append(current.strip())
            current = ""
    return out


@pytest.mark.parametrize("statement", statements())
def test_each_documented_import_works(statement: str) -> None:
    exec(compile(statement, "README.md", "exec"), {})


def test_the_block_covers_wskit_all() -> None:
    """``wskit.__all__`` is the public surface of the package: the README names all of it."""
    import wskit

    names = set(re.findall(r"\b\w+\b", public_block()))
    missing = sorted(n for n in wskit.__all__ if n not in names and n != "__version__")
    assert not missing, f"in wskit.__all__ but not in the README's public imports: {missing}"


def test_documented_names_in_the_prose_resolve() -> None:
    """``wskit.X`` written anywhere in the README is an attribute that exists."""
    import importlib

    import wskit

    text = README.read_text(encoding="utf-8")
    found = sorted(set(re.findall(r"\bwskit(?:\.\w+)+", text)))
    assert {"wskit.serve", "wskit.connect", "wskit.Client", "wskit.SyncClient"} <= set(found)
    for dotted in found:
        parts = dotted.split(".")
        obj: object = wskit
        for i, part in enumerate(parts[1:], start=2):
            if not hasattr(obj, part):
                obj = importlib.import_module(".".join(parts[:i]))
            else:
                obj = getattr(obj, part)
