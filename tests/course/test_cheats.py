"""The cheat battery: every trick a student tried on the old grader scores 0, on one
grading run beside honest submissions that score full marks, within its budget,
with no process left behind (``python -m wskit grade`` in :mod:`wskit.course.grading`).

Each cheat is a student copy of notebook 07 (stubs that raise) plus one cell. The
trick is written twice: as plain statements (what would run in a kernel) and inside
a class body, which the grader does execute, in the sandbox, so each trick really
runs where the learner's code runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wskit.course.grading import Row, grade
from wskit.course.sandbox import isolation
from wskit.course.teaching import student_copy

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TIMEOUT = 25.0   # per exercise: the hanging cheats cost this, twice each
MARKER = f"wskit-cheat-{os.getpid()}"

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.timeout(600)]


def _load(stem: str) -> dict:
    return json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))


def _with_cell(nb: dict, source: str) -> dict:
    nb["cells"].append({"cell_type": "code", "id": f"cheat{len(nb['cells'])}", "metadata": {},
                        "outputs": [], "execution_count": None,
                        "source": textwrap.dedent(source)})
    return nb


def _in_class(body: str) -> str:
    """The trick as a class body: the grader runs class definitions."""
    return "class _Trick:\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n"


def _cheats(folder: Path, port: int) -> dict[str, str]:
    honest = folder / "honest-07_recovery.ipynb"
    return {
        "json_dumps": """
            import json
            _real = json.dumps
            json.dumps = lambda o, *a, **k: _real({**o, "points": o["max"]} if isinstance(o, dict)
                                                  and "max" in o else o, *a, **k)
        """,
        "print": """
            import builtins
            _print = builtins.print
            builtins.print = lambda *a, **k: _print(*[str(x).replace("0/", "2/") for x in a], **k)
        """,
        "reload": """
            import importlib
            importlib.reload = lambda module: module
        """,
        "outcome": """
            import wskit.course.exercises as _x
            async def _full(exercise, *a, **k):
                return {"exercise": exercise.key, "points": exercise.points,
                        "max": exercise.points, "hint": "", "seed": None}
            _x.outcome = _full
            _x.run_check = lambda exercise, *a, **k: _full(exercise)
            for _e in _x.EXERCISES:
                object.__setattr__(_e, "check", lambda *a, **k: None)
        """,
        "transformer": """
            import re
            def _rewrite(lines):
                return [re.sub(r"points.: 0", "points': 2", line) for line in lines]
            get_ipython().input_transformers_cleanup.append(_rewrite)
        """,
        "always_equal": """
            class _Yes(list):
                def __eq__(self, other): return True
                def __ne__(self, other): return False
            def backoff_delay(attempt, base, cap, rng):
                return type("F", (float,), {"__eq__": lambda s, o: True, "__le__": lambda s, o: True,
                                            "__ge__": lambda s, o: True})(0.0)
            def merge(replayed, buffered, top):
                return _Yes()
        """,
        "frame_peek": """
            import inspect
            def _peek(*names):
                frame = inspect.currentframe()
                while frame is not None:
                    for name in names:
                        if name in frame.f_locals:
                            return frame.f_locals[name]
                    frame = frame.f_back
                return None
            def merge(replayed, buffered, top):
                return _peek("want", "expected")
            def backoff_delay(attempt, base, cap, rng):
                return _peek("ceiling") or 0.0
        """,
        "forged_replies": """
            import json, os
            for _fd in range(3, 64):
                try:
                    for _i in range(2000):
                        os.write(_fd, (json.dumps({"id": _i, "ok": True}) + "\\n").encode())
                except OSError:
                    pass
        """,
        "neighbour": f"""
            import glob, os
            for _path in glob.glob({str(folder)!r} + "/*.ipynb") + [{str(honest)!r}]:
                try:
                    with open(_path, "w") as _f:
                        _f.write("{{}}")
                except OSError:
                    pass
            for _path in glob.glob("../*.ipynb") + glob.glob("../../*/*.ipynb"):
                try:
                    os.remove(_path)
                except OSError:
                    pass
        """,
        "neighbour_read": f"""
            import json
            for _cell in json.load(open({str(honest)!r}))["cells"]:
                _src = "".join(_cell["source"])
                if _cell["cell_type"] == "code" and ("def merge" in _src or "def backoff" in _src):
                    exec(_src, globals())
        """,
        "outlives": f"""
            import os, subprocess
            _fds = [int(n) for n in os.listdir("/proc/self/fd")]
            subprocess.Popen(["sh", "-c", "sleep 1000; : {MARKER}"], start_new_session=True,
                             pass_fds=[fd for fd in _fds if fd > 2])
            if os.fork() == 0:
                os.setsid()
                os.execvp("sh", ["sh", "-c", "sleep 1001; : {MARKER}"])
        """,
        "sleep_infinity": """
            import subprocess
            subprocess.run(["sleep", "infinity"])
        """,
        "memory": """
            _hog = []
            while True:
                _hog.append(bytearray(64 << 20))
        """,
        "network": f"""
            import socket
            _s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
            _s.sendall(b"stolen")
            _s.close()
        """,
    }


class _Listener:
    """A local TCP listener a cheat tries to reach; records every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _marked_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if MARKER.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def battery() -> Iterator[dict]:
    # world-readable, as a teacher's folder of submissions usually is: only the
    # sandbox's own view (its uid, the folder hidden by a tmpfs) keeps neighbours out
    folder = Path(tempfile.mkdtemp(prefix="wskit-cheats-"))
    folder.chmod(0o755)
    try:
        yield _run_battery(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for pid in _marked_processes():  # only if a test below is failing
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _run_battery(folder: Path) -> dict:
    listener = _Listener()
    names: dict[str, Path] = {}
    honest = _load("07_recovery")
    names["honest"] = folder / "honest-07_recovery.ipynb"
    names["honest"].write_text(json.dumps(honest), encoding="utf-8")
    names["honest05"] = folder / "honest-05_exercises.ipynb"
    names["honest05"].write_text(json.dumps(_load("05_exercises")), encoding="utf-8")
    for trick, source in _cheats(folder, listener.port).items():
        nb = _with_cell(student_copy(_load("07_recovery")), source)
        nb = _with_cell(nb, _in_class(source))
        names[trick] = folder / f"{trick}-07_recovery.ipynb"
        names[trick].write_text(json.dumps(nb), encoding="utf-8")
    before = {p: p.read_bytes() for p in names.values()}
    started = time.monotonic()
    try:
        rows = grade([str(p) for p in names.values()], timeout=TIMEOUT, jobs=2, seed=25)
    finally:
        listener.close()
    took = time.monotonic() - started
    by_path = {str(p): key for key, p in names.items()}
    out: dict[str, list[Row]] = {key: [] for key in names}
    for row in rows:
        out[by_path[row.submission]].append(row)
    return {"rows": out, "took": took, "accepted": listener.accepted, "before": before,
            "left": _marked_processes(), "count": len(names)}


TRICKS = ["json_dumps", "print", "reload", "outcome", "transformer", "always_equal",
          "frame_peek", "forged_replies", "neighbour", "neighbour_read", "outlives",
          "sleep_infinity", "memory", "network"]


@pytest.mark.parametrize("trick", TRICKS)
def test_every_trick_scores_zero(battery: dict, trick: str) -> None:
    if trick == "neighbour_read" and isolation() == "session":
        pytest.skip("no mount namespace here: a sandbox sees the submissions' folder")
    rows = battery["rows"][trick]
    assert [r.exercise for r in rows] == ["7.1", "7.2"], rows
    assert all(r.points == 0 for r in rows), rows


def test_the_honest_submissions_beside_them_score_full_marks(battery: dict) -> None:
    for key in ("honest", "honest05"):
        rows = battery["rows"][key]
        assert rows and all(r.points == r.max > 0 for r in rows), rows


def test_the_run_ends_within_its_budget_with_nothing_left(battery: dict) -> None:
    # 2 sandboxes at a time; the two hanging cheats cost TIMEOUT per exercise
    budget = 4 * TIMEOUT + battery["count"] * 2 * 6
    assert battery["took"] < budget, (battery["took"], budget)
    if isolation() == "session":
        pytest.skip("no PID namespace here: a process that leaves the session survives")
    assert battery["left"] == [], "processes started by a submission outlived the grading run"


def test_no_submission_reached_the_network(battery: dict) -> None:
    if isolation() == "session":
        pytest.skip("no network namespace on this machine (unshare unavailable)")
    assert battery["accepted"] == 0


def test_no_submission_rewrote_another(battery: dict) -> None:
    if isolation() != "root":
        pytest.skip("only a grader running as root can give each sandbox a uid of its own")
    changed = [p.name for p, data in battery["before"].items()
               if not p.exists() or p.read_bytes() != data]
    assert changed == []


def test_the_hangs_say_so(battery: dict) -> None:
    rows = battery["rows"]["sleep_infinity"]
    assert all("stopped after" in r.hint or "did not" in r.hint for r in rows), rows


@pytest.mark.timeout(900)
def test_thirty_submissions_two_at_a_time(tmp_path: Path) -> None:
    honest = json.dumps(_load("07_recovery"))
    for n in range(30):
        (tmp_path / f"student{n:02}-07_recovery.ipynb").write_text(honest, encoding="utf-8")
    started = time.monotonic()
    rows = grade([str(tmp_path)], timeout=60, jobs=2, seed=30)
    took = time.monotonic() - started
    assert len(rows) == 60 and all(r.points == r.max for r in rows), \
        [r for r in rows if r.points != r.max]
    assert len({r.student for r in rows}) == 30
    assert took < 600, took
    print(f"30 submissions, 60 sandboxes, --jobs 2: {took:.0f} s")
