"""``python -m wskit grade``: collected notebooks scored by checks that run in the grader,
against the learner's definitions held in a sandbox.

One grading run (module fixture) over the course's exercise notebooks with their
solutions, their student copies, a copy with one broken solution, and a student
copy whose check cells were replaced by printed success lines. Then: wrong answers
that the old checks let through fail now (run in this process, as the notebooks
run them), the CSV, the feedback pages, seeds and student ids. The tricks a
student might try are in test_cheats.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wskit.course import exercises
from wskit.course.exercises import EXERCISES, for_notebook
from wskit.course.grading import (
    Row,
    exercise_seed,
    grade,
    notebook_of,
    safe_cell,
    student_of,
    write_csv,
    write_feedback,
)
from wskit.course.learner import definitions, same
from wskit.course.teaching import ExerciseFailed, student_copy

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WITH_EXERCISES = sorted({e.notebook for e in EXERCISES})

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.timeout(600)]


def _load(stem: str) -> dict:
    return json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))


def _write(folder: Path, name: str, nb: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def _broken_typing_tracker() -> dict:
    """The solutions, with exercise 5.3's answer off by one rule (never throttles)."""
    nb = _load("05_exercises")
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if "solution" in cell["metadata"].get("tags", []) and "class TypingTracker" in text:
            cell["source"] = text.replace("now - self.announced[key] < self.throttle", "False")
            return nb
    raise AssertionError("no TypingTracker solution in notebook 05")


def _faked_student_copy() -> dict:
    """A student copy whose check cells print what a passing check prints."""
    nb = student_copy(_load("05_exercises"))
    for cell in nb["cells"]:
        if "check" in cell["metadata"].get("tags", []):
            cell["source"] = 'print("✓ Exercise passed")\n'
            cell["metadata"]["tags"] = []  # and no longer marked as a check
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Row]]:
    folder = tmp_path_factory.mktemp("submissions")
    names = {}
    for stem in WITH_EXERCISES:
        names[f"solutions-{stem}"] = _write(folder, f"solutions-{stem}.ipynb", _load(stem))
        names[f"student-{stem}"] = _write(folder, f"student-{stem}.ipynb",
                                          student_copy(_load(stem)))
    names["broken"] = _write(folder, "broken-05_exercises.ipynb", _broken_typing_tracker())
    faked = _faked_student_copy()
    faked["metadata"].pop("wskit")  # identified by its file name instead
    names["faked"] = _write(folder, "faked-05_exercises.ipynb", faked)
    rows = grade([str(p) for p in names.values()], timeout=120, jobs=2, seed=1)
    by_path = {str(p): key for key, p in names.items()}
    out: dict[str, list[Row]] = {key: [] for key in names}
    for row in rows:
        out[by_path[row.submission]].append(row)
    return out


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_the_solutions_score_full_marks(graded: dict[str, list[Row]], stem: str) -> None:
    rows = graded[f"solutions-{stem}"]
    assert [r.exercise for r in rows] == [e.key for e in for_notebook(stem)]
    assert all(r.points == r.max > 0 and r.hint == "" for r in rows), rows


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_the_student_copy_scores_zero_with_hints(graded: dict[str, list[Row]], stem: str) -> None:
    rows = graded[f"student-{stem}"]
    assert len(rows) == len(for_notebook(stem))
    assert all(r.points == 0 and "not implemented yet" in r.hint for r in rows), rows


def test_one_broken_solution_loses_exactly_its_points(graded: dict[str, list[Row]]) -> None:
    rows = {r.exercise: r for r in graded["broken"]}
    full = {r.exercise: r for r in graded["solutions-05_exercises"]}
    assert rows["5.3"].points == 0 and "throttle" in rows["5.3"].hint
    assert sum(r.points for r in rows.values()) == sum(r.points for r in full.values()) \
        - full["5.3"].max


def test_printed_success_lines_score_nothing(graded: dict[str, list[Row]]) -> None:
    rows = graded["faked"]
    assert [r.exercise for r in rows] == [e.key for e in for_notebook("05_exercises")]
    assert all(r.points == 0 for r in rows), rows


@pytest.mark.timeout(120)
def test_a_hang_is_cut_off_and_scored(tmp_path: Path) -> None:
    """A cell that starts a server, one that never returns (neither is a definition, so
    neither runs), and a definition that hangs when called: that exercise is stopped
    at its timeout and scores 0 with a hint; the other scores."""
    nb = {"cells": [], "metadata": {"wskit": {"notebook": "07_recovery"}},
          "nbformat": 4, "nbformat_minor": 5}
    sources = [
        "import wskit, time\nserver = await wskit.serve('aiohttp', name='forever', "
        "backplane='none')\nprint(server.url)",
        "def backoff_delay(attempt, base, cap, rng):\n"
        "    return rng.uniform(0, min(cap, base * 2 ** attempt))",
        "while True:\n    time.sleep(1)",
        "def merge(replayed, buffered, top):\n    while True:\n        time.sleep(1)",
    ]
    for n, source in enumerate(sources):
        nb["cells"].append({"cell_type": "code", "id": f"c{n}", "metadata": {}, "outputs": [],
                            "execution_count": None, "source": source})
    path = _write(tmp_path, "hung.ipynb", nb)
    rows = {r.exercise: r for r in grade([str(path)], timeout=8, jobs=1)}
    assert rows["7.1"].points == rows["7.1"].max
    assert rows["7.2"].points == 0 and "stopped after 8 s" in rows["7.2"].hint


@pytest.mark.timeout(120)
def test_the_command_prints_a_table_and_writes_the_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "alice-07_recovery.ipynb", student_copy(_load("07_recovery")))
    out, pages = tmp_path / "scores.csv", tmp_path / "feedback"
    done = subprocess.run([sys.executable, "-m", "wskit", "grade", str(path), "--csv", str(out),
                           "--timeout", "60", "--seed", "5", "--feedback", str(pages)],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    assert "run seed 5" in done.stdout and "7.1" in done.stdout and "total 0/3" in done.stdout
    with out.open(encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["student", "submission", "exercise", "points", "max", "seed", "hint"]
    assert [row[0] for row in table[1:]] == ["alice", "alice"]
    assert [row[2:5] for row in table[1:]] == [["7.1", "0", "1"], ["7.2", "0", "2"]]
    assert [int(row[5]) for row in table[1:]] == [exercise_seed(5, "alice", k) for k in ("7.1", "7.2")]
    assert all("not implemented yet" in row[6] for row in table[1:])
    page = (pages / "alice-07_recovery.html").read_text(encoding="utf-8")
    assert "alice" in page and "0 of 3 points" in page and "not implemented yet" in page


def test_the_csv_is_safe_against_formula_injection(tmp_path: Path) -> None:
    rows = [Row(name, f"{name}.ipynb", "5.1", 0, 1, hint, 3) for name, hint in (
        ("=HYPERLINK(\"http://x\")", "+1"), ("@SUM(A1)", "-2"), ("\tx", "\rcmd"), ("bob", "ok"))]
    out = tmp_path / "s.csv"
    write_csv(rows, out)
    with out.open(encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))[1:]
    for row in table:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert table[0][0] == "'=HYPERLINK(\"http://x\")" and table[3][0] == "bob"
    assert safe_cell(7) == 7


def test_feedback_pages_escape_what_they_show(tmp_path: Path) -> None:
    rows = [Row("<b>eve</b>", "x/eve-05_exercises.ipynb", "5.1", 0, 1, "<script>x</script>", 1)]
    [page] = write_feedback(rows, tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;b&gt;eve" in text


def test_students_and_seeds() -> None:
    assert student_of(Path("alice-05_exercises.ipynb"), {}, "05_exercises") == "alice"
    assert student_of(Path("bob_07_recovery (1).ipynb"), {}, "07_recovery") == "bob"
    assert student_of(Path("x.ipynb"), {"metadata": {"wskit": {"student": "s123"}}}, None) == "s123"
    assert exercise_seed(1, "alice", "5.1") == exercise_seed(1, "alice", "5.1")
    assert len({exercise_seed(1, s, k) for s in ("a", "b") for k in ("5.1", "5.2")}) == 4


def test_only_definitions_are_kept() -> None:
    cells = ["import json\nserver = await wskit.serve('aiohttp')\nBASE = 0.1\nprint('hi')",
             "%time x = 1\ndef f(x):\n    return json.dumps(x)\nwhile True:\n    pass",
             "@decorate\nclass C:\n    pass\nTABLE = {'a': [1, 2]}\ncall = make()",
             "this is not python", "import matplotlib.pyplot as plt\nfrom IPython import display"]
    kept = "\n".join(definitions(cells))
    assert "import json" in kept and "BASE = 0.1" in kept and "def f" in kept
    assert "@decorate" in kept and "TABLE" in kept
    assert "serve" not in kept and "print" not in kept and "while" not in kept \
        and "make()" not in kept and "%time" not in kept and "matplotlib" not in kept \
        and "IPython" not in kept


def test_same_compares_plain_values_with_their_types() -> None:
    assert same([1, {"a": "b"}], [1, {"a": "b"}])
    assert same(1, 1.0) and not same(1.0, 1)  # a whole number where a float is asked is one
    assert same(True, True) and not same(1, True) and not same(True, 1) and not same(None, [])
    assert not same({"a": 1}, {"a": 1, "b": 2}) and not same([1, 2], [1])


# -- wrong answers the old checks let through ---------------------------------------------

async def _fails(check: object, *answers: object) -> ExerciseFailed:
    with pytest.raises(ExerciseFailed) as failure:
        result = check(*answers, seed=3)  # type: ignore[operator]
        if hasattr(result, "__await__"):
            await result
    return failure.value


@pytest.mark.timeout(120)
async def test_a_fixed_retry_forever_fails_3_1() -> None:
    import asyncio

    import wskit

    async def forever(client, to, content, attempts, base):  # noqa: ANN001, ANN202
        while True:
            try:
                return await client.direct(to, content)
            except wskit.ServerError as err:
                if err.code != "backplane_unavailable":
                    raise
                await asyncio.sleep(0.1)

    failure = await _fails(exercises.check_retry_when_unavailable, forever)
    assert "attempts" in failure.problem or "raise" in failure.problem


@pytest.mark.timeout(60)
async def test_an_integer_token_bucket_fails_5_4() -> None:
    class IntegerBucket:
        def __init__(self, rate, burst):  # noqa: ANN001
            self.rate, self.burst, self.buckets = rate, burst, {}

        def allow(self, user, now):  # noqa: ANN001, ANN201
            tokens, when = self.buckets.get(user, (self.burst, now))
            tokens = min(self.burst, tokens + int((now - when) * self.rate))
            if tokens < 1:
                self.buckets[user] = (tokens, now)
                return False
            self.buckets[user] = (tokens - 1, now)
            return True

    failure = await _fails(exercises.check_rate_limiter, IntegerBucket)
    assert "allowed 1 of 11" in failure.problem and "allows 6" in failure.problem


@pytest.mark.timeout(60)
async def test_a_scan_pattern_fails_5_5() -> None:
    import json as json_

    async def announce(redis, ns, room, instance, users, ttl):  # noqa: ANN001, ANN202
        await redis.set(f"{ns}:members:{room}:{instance}", json_.dumps(users), ex=ttl)

    async def room_members(redis, ns, room):  # noqa: ANN001, ANN202
        keys = [key async for key in redis.scan_iter(match=f"{ns}:members:{room}:*")]
        values = await redis.mget(keys) if keys else []
        return sorted({u for v in values if v for u in json_.loads(v)})

    failure = await _fails(exercises.check_members_across_instances, announce, room_members)
    assert "room_members" in failure.problem


@pytest.mark.timeout(60)
async def test_awaiting_each_send_in_turn_fails_1_1() -> None:
    async def in_turn(manager, room_id, message, exclude=None):  # noqa: ANN001, ANN202
        dead = []
        for user_id in list(manager.rooms.get(room_id, ())):
            socket = manager.connections.get(user_id)
            if user_id == exclude or socket is None:
                continue
            try:
                await socket.send_json(message)
            except Exception:
                dead.append(user_id)
        for user_id in dead:
            await manager.disconnect(user_id)

    failure = await _fails(exercises.check_dead_socket_broadcast, in_turn)
    assert "never reads" in failure.problem


def test_which_notebook_a_submission_is() -> None:
    assert notebook_of(Path("x.ipynb"), {"metadata": {"wskit": {"notebook": "05_exercises"}}}) \
        == "05_exercises"
    assert notebook_of(Path("bob-07_recovery (1).ipynb"), {}) == "07_recovery"
    assert notebook_of(Path("essay.ipynb"), {}) is None


def _check_double(double: object) -> None:
    """A check in the older style: it takes the learner's function itself."""
    from wskit.course.teaching import attempt, expect

    got = attempt("Exercise 9.9", "double it", double, 21)  # type: ignore[arg-type]
    expect("Exercise 9.9", got == 42, f"double(21) returned {got!r}", "double it")


@pytest.mark.timeout(120)
def test_a_check_in_the_older_style_still_grades_in_the_sandbox() -> None:
    from wskit.course.checker import check_in_sandbox
    from wskit.course.exercises import Exercise

    exercise = Exercise("9.9", "double", "07_recovery", ("double",), _check_double, "easy", 1,
                        ("double it",))
    good = check_in_sandbox(exercise, b"{}", ["def double(x):\n    return 2 * x"], 1, 60)
    yes = "class Yes:\n    def __eq__(self, other):\n        return True\n"
    bad = check_in_sandbox(exercise, b"{}", [yes + "def double(x):\n    return Yes()"], 1, 60)
    assert good["points"] == 1, good
    assert bad["points"] == 0 and "not JSON serializable" in bad["hint"], bad


def test_the_same_seed_draws_the_same_cases() -> None:
    """What makes a run re-gradable: a check's cases come from its seed alone."""
    def recorder(log: list) -> object:
        def merge(replayed, buffered, top):  # noqa: ANN001, ANN202
            log.append((json.dumps(replayed), json.dumps(buffered), top))
            return replayed + [m for m in buffered if m["offset"] > top]
        return merge

    runs: list[list] = [[], [], []]
    for log, seed in zip(runs, (11, 11, 12)):
        exercises.check_history_to_live(recorder(log), seed=seed)
    assert runs[0] == runs[1] and len(runs[0]) == 50
    assert runs[0] != runs[2]
