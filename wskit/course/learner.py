"""How a check reaches the learner's code: as calls with plain values in and out.

A check is written once, against :class:`Learner`: ``call`` a learner's function,
``new`` an instance of a learner's class and call its methods, or run a
``harness`` (a trusted function of :mod:`wskit.course.exercises.harness`, for a
check that needs the learner's code inside a server or on sockets) that reports
plain observations. The check itself draws the cases, computes the expected
values and judges. Two implementations:

* :class:`LocalLearner`, in the notebook: the learner's objects are called
  directly, for the learner's own feedback (whoever cheats here fools only
  themselves);
* :class:`RemoteLearner`, in the grader: the learner's definitions live in a
  sandboxed child process (:mod:`wskit.course.sandbox`) that only answers calls;
  the check runs in the grader, where no learner code ever runs.

In both, every value coming back goes through JSON (parsed by the caller's own
``json``), so an answer is a plain ``dict``/``list``/``str``/number/``bool``/``None``:
an object whose ``__eq__`` is always true, or a list subclass, never reaches a
comparison. Source extraction (:func:`definitions`) is here too: what of a
notebook the grader runs.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import inspect
import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

__all__ = ["Learner", "LocalLearner", "LearnerError", "LearnerTimeout", "Instance",
           "plain", "same", "observe", "quiet", "is_quiet", "definitions"]


class LearnerError(Exception):
    """The learner's code raised (``kind`` is the exception's class name), or answered
    with something that is not plain data."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class LearnerTimeout(LearnerError):
    """The learner's code did not answer in time (the grader then ends its sandbox)."""


def plain(value: Any) -> Any:
    """``value`` as JSON would carry it, decoded by this process's own ``json``."""
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise LearnerError("TypeError", f"returned {type(value).__name__}, which is not plain "
                           "data (use lists, dicts, str, numbers, bool, None)") from exc


def same(got: Any, want: Any) -> bool:
    """Equal as plain data, types included (``True`` is not ``1``; an int is accepted
    where a float is wanted): never calls anything of the learner's, since ``got``
    has been through JSON and is built from dict, list, str, int, float, bool, None."""
    if isinstance(want, float) and type(got) in (int, float):
        return float(got) == want
    if type(got) is not type(want):
        return False
    if type(want) is dict:
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    if type(want) is list:
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return bool(got == want)


async def observe(exercise: str, hint: str, learner: Learner, harness: str,
                  **params: Any) -> Any:
    """Run a harness beside the learner's code (:meth:`Learner.harness`); a stub or a
    crash becomes an ``ExerciseFailed``, as in :func:`wskit.course.teaching.attempt`."""
    from .teaching import _failure

    try:
        return await learner.harness(harness, **params)
    except Exception as exc:
        raise _failure(exercise, hint, exc) from exc


_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("wskit_quiet", default=False)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """``passed()`` prints nothing meanwhile, in this thread or task only (the grader
    checks several submissions at once, so ``sys.stdout`` is not swapped)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def is_quiet() -> bool:
    return _QUIET.get()


class Learner(Protocol):
    def call(self, name: str, *args: Any) -> Any: ...
    def call_many(self, name: str, calls: list[list[Any]]) -> list[Any]: ...
    def new(self, name: str, *args: Any) -> Instance: ...
    def method(self, ref: int, method: str, *args: Any) -> Any: ...
    async def harness(self, fn: str, **params: Any) -> Any: ...
    def objects(self, names: tuple[str, ...]) -> list[Any]: ...


class Instance:
    """A learner's object, seen from the check: ``inst.allow("u", 0.0)`` is a call."""

    def __init__(self, learner: Learner, ref: int) -> None:
        self._learner, self._ref = learner, ref

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._learner.method(self._ref, method, *args)


def _raised(exc: BaseException) -> LearnerError:
    return LearnerError(type(exc).__name__, repr(exc))


class LocalLearner:
    """The learner's objects called in this process (the notebook's kernel)."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self._objects: list[Any] = []

    def _get(self, name: str) -> Any:
        if name not in self.namespace:
            raise LearnerError("NameError", f"{name} is not defined (run its cell)")
        return self.namespace[name]

    def _answer(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        copies = [a if isinstance(a, random.Random) else plain(a) for a in args]
        try:
            value = func(*copies)
        except Exception as exc:
            raise _raised(exc) from exc
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()
            raise LearnerError("TypeError", "this one must not be async: use def, not async def")
        return plain(value)

    def call(self, name: str, *args: Any) -> Any:
        return self._answer(self._get(name), args)

    def call_many(self, name: str, calls: list[list[Any]]) -> list[Any]:
        """``call`` once per argument list, in order (one round trip in the grader)."""
        return [self.call(name, *args) for args in calls]

    def new(self, name: str, *args: Any) -> Instance:
        try:
            obj = self._get(name)(*[plain(a) for a in args])
        except LearnerError:
            raise
        except Exception as exc:
            raise _raised(exc) from exc
        self._objects.append(obj)
        return Instance(self, len(self._objects) - 1)

    def method(self, ref: int, method: str, *args: Any) -> Any:
        try:
            func = getattr(self._objects[ref], method)
        except AttributeError as exc:
            raise _raised(exc) from exc
        return self._answer(func, args)

    def objects(self, names: tuple[str, ...]) -> list[Any]:
        """The learner's objects themselves: for a check written in the older style,
        ``check(*objects)``, which the notebook runs in the kernel."""
        return [self._get(n) for n in names]

    async def harness(self, fn: str, **params: Any) -> Any:
        from .exercises import harness

        run: Callable[..., Awaitable[Any]] = getattr(harness, fn)
        try:
            found = await run(self.namespace, **params)
        except Exception as exc:
            raise _raised(exc) from exc
        return plain(found)


def encode_arg(value: Any, rngs: dict[int, tuple[int, random.Random]]) -> Any:
    """An argument for the sandbox: plain data, or a ``random.Random`` by reference
    (its state the first time), so the learner draws from the rng it was given."""
    if isinstance(value, random.Random):
        known = rngs.get(id(value))
        if known is not None:
            return {"__rng__": known[0]}
        rngs[id(value)] = (len(rngs), value)  # the object kept alive: ids stay unique
        return {"__rng__": len(rngs) - 1, "state": value.getstate()}
    return value


# -- which parts of a notebook the grader runs -----------------------------------------

_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _calls_outside_lambdas(node: ast.AST) -> bool:
    if isinstance(node, ast.Lambda):
        return False
    if isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)):
        return True
    return any(_calls_outside_lambdas(child) for child in ast.iter_child_nodes(node))


#: imports left out: plotting and display, which no exercise needs and which take
#: seconds to import in every sandbox
_SKIPPED = ("matplotlib", "IPython", "seaborn", "pandas", "plotly")


def _skipped_import(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Import):
        names = [a.name for a in stmt.names]
    elif isinstance(stmt, ast.ImportFrom):
        names = [stmt.module or ""]
    else:
        return False
    return all(n.split(".")[0] in _SKIPPED for n in names)


def _kept(stmt: ast.stmt) -> bool:
    if _skipped_import(stmt):
        return False
    if isinstance(stmt, _KEEP):
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
        return not _calls_outside_lambdas(stmt.value)  # constants, tables, lambdas
    return False


def definitions(cells: list[str]) -> list[str]:
    """Per code cell, the statements that define things: imports, ``def``, ``async
    def``, ``class``, and assignments that call nothing (``BASE = 0.1``, ``TABLE =
    {...}``), but no plotting imports. Everything else (starting servers, loops, expressions, magics) is
    left out, so a cell that hangs or starts a process is not run by the grader.
    A cell that does not parse contributes nothing."""
    kept: list[str] = []
    flags = ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    for source in cells:
        lines = [line for line in source.splitlines()
                 if not line.lstrip().startswith(("%", "!"))]  # IPython magics and shell
        text = "\n".join(lines)
        try:
            tree = compile(text, "<cell>", "exec", flags=flags, dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        chunk = "\n".join(ast.unparse(stmt) for stmt in tree.body if _kept(stmt))
        if chunk.strip():
            kept.append(chunk)
    return kept
