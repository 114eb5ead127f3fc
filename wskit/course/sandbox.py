"""A throwaway sandbox that holds one submission's definitions and only answers calls.

The grader (:mod:`wskit.course.grading`) starts one per submission and exercise.
The child is a fresh ``python -I`` (no ``''``/cwd on ``sys.path``, no user site,
no ``PYTHON*`` variables) whose working directory is a new temporary directory
holding only that submission's notebook. It reads requests from its stdin and
answers on its stdout, one JSON line each; the learner's own output goes to a
file. The parent reads every reply with a deadline, never blocks on a write,
and at the end kills the whole process tree.

Isolation, strongest available first (:func:`isolation`):

* ``root``: the grader runs as root (CI). ``unshare`` gives the child new mount,
  network and PID namespaces: no network but its own loopback, no view of other
  processes, and every process of the namespace dies with it (a daemonised
  grandchild too: the kernel ends a PID namespace with its first process). Inside,
  ``root``'s home and the submissions' folders are hidden (an empty tmpfs on each),
  then ``setpriv`` drops to a uid of its own (one per sandbox, no capabilities,
  ``no_new_privs``), which can write nowhere but its directory and ``/tmp``.
* ``userns``: not root but user namespaces are allowed: the same namespaces (the
  submissions' folders hidden too), the teacher's own uid (so files the teacher
  can write, the learner's code can: the grader reads every notebook before it
  runs any, so no submission can change another's grade, but it could change a
  file on disk).
* ``session``: no ``unshare``: a new session and the resource limits only. No
  network isolation, and a process that leaves the session can outlive the
  sandbox. The grader says which one it used.

Every mode sets resource limits (address space, CPU seconds, file size; processes
where the uid is the sandbox's own).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Sandbox", "SandboxDied", "isolation", "MEMORY", "CPU_SECONDS"]

MEMORY = 2 << 30            #: address space per sandbox (bytes)
CPU_SECONDS = 120           #: CPU time per sandbox
MAX_REPLY = 32 << 20        #: the longest reply line read from a sandbox
_UIDS = itertools.count()
_UID_BASE, _UID_SPAN = 61000, 4000
_lock = threading.Lock()
_mode: str | None = None
#: one lock file per sandbox uid: a uid is a sandbox's own across every grader process
#: on the machine (two graders, or two pytest workers, would otherwise hand out the
#: same uid, and one's cleanup, which kills whatever runs as its uid, kills the other's)
_UID_LOCKS = Path(tempfile.gettempdir()) / "wskit-sandbox-uids"


def _claim_uid() -> tuple[int, int]:
    """A uid no other live sandbox on this machine holds, and the fd that holds it
    (an flock: the kernel lets it go when the fd closes or the grader dies)."""
    _UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    with _lock:
        start = next(_UIDS)
    for i in range(_UID_SPAN):
        uid = _UID_BASE + (os.getpid() + start + i) % _UID_SPAN
        fd = os.open(_UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return uid, fd
    raise RuntimeError(f"all {_UID_SPAN} sandbox uids are in use")


class SandboxDied(Exception):
    """The sandbox ended or broke the protocol (its code exited, crashed, or was killed)."""


def _root_of_wskit() -> str:
    import wskit

    return str(Path(wskit.__file__).resolve().parent.parent)


def _boot() -> str:
    return (f"import sys; sys.path[:0] = [{_root_of_wskit()!r}]; "
            "from wskit.course.sandbox import _child; _child()")


def _hide_root_home() -> str:
    """Shell lines (run as root inside the new mount namespace) that replace /root
    with an empty tmpfs, keeping only the interpreter's tree if it lives there."""
    home = Path("/root")
    keep = [p for p in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
                        Path(_root_of_wskit())} if home in p.parents]
    tops = sorted({home / p.relative_to(home).parts[0] for p in keep})
    lines = ["mount --make-rprivate /"]
    for n, top in enumerate(tops):
        lines.append(f'mkdir -p "$STAGE/{n}" && mount --bind "{top}" "$STAGE/{n}"')
    lines.append("mount -t tmpfs -o mode=755,size=1m tmpfs /root")
    for n, top in enumerate(tops):
        lines.append(f'mkdir -p "{top}" && mount --move "$STAGE/{n}" "{top}"')
    return " && ".join(lines)


def _covers(hide: Sequence[Path], own: Path) -> str:
    """Shell lines mounting an empty tmpfs on each folder of ``hide``, except one that
    holds what the sandbox needs (its own directory, the interpreter, wskit)."""
    needed = [own.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
              Path(_root_of_wskit())]
    lines = []
    for folder in sorted({Path(p).resolve() for p in hide}):
        if folder == Path("/") or any(n == folder or folder in n.parents for n in needed):
            continue
        lines.append(f"mount -t tmpfs -o mode=755,size=1m tmpfs {shlex.quote(str(folder))}; ")
    return "mount --make-rprivate / 2>/dev/null; " + "".join(lines) if lines else ""


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd + ["true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_NS = ["--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
#: a new network namespace has only a loopback, and it is down: bring it up (the checks'
#: servers listen on 127.0.0.1), with ``ip`` or, where it is missing, an ioctl
_LO_UP = ("ip link set lo up 2>/dev/null || " + sys.executable + " -I -c \"import fcntl, "
          "socket, struct; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
          "f = struct.unpack('16sH', fcntl.ioctl(s, 0x8913, struct.pack('16sH', b'lo', 0)))[1]; "
          "fcntl.ioctl(s, 0x8914, struct.pack('16sH', b'lo', f | 1))\"")


def isolation() -> str:
    """``root``, ``userns`` or ``session``: see the module's docstring."""
    global _mode
    with _lock:
        if _mode is None:
            has = shutil.which("unshare") is not None
            if has and os.geteuid() == 0 and shutil.which("setpriv") \
                    and _probe(["unshare", "--mount", *_NS, "--"]):
                _mode = "root"
            elif has and _probe(["unshare", "--user", "--map-root-user", "--mount", *_NS, "--"]):
                _mode = "userns"
            else:
                _mode = "session"
        return _mode


class Sandbox:
    """One child holding one submission's definitions; :meth:`request` talks to it."""

    def __init__(self, notebook: bytes, memory: int = MEMORY, cpu: int = CPU_SECONDS,
                 hide: Sequence[Path] = ()) -> None:
        """``hide``: folders (the submissions') covered by an empty tmpfs inside the
        sandbox, so no submission reads another's notebook (``root`` and ``userns``)."""
        self.mode = isolation()
        self.dir = Path(tempfile.mkdtemp(prefix="wskit-sandbox-"))
        covers = _covers(hide, self.dir)
        (self.dir / "submission.ipynb").write_bytes(notebook)
        self.uid: int | None = None
        self._uid_lock: int | None = None
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.dir), "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "WSKIT_SANDBOX_MEMORY": str(memory),
               "WSKIT_SANDBOX_CPU": str(cpu)}
        python = [sys.executable, "-I", "-c", _boot()]
        if self.mode == "root":
            self.uid, self._uid_lock = _claim_uid()
            stage = tempfile.mkdtemp(prefix="stage-", dir=self.dir)
            for path in (self.dir, self.dir / "submission.ipynb"):
                os.chown(path, self.uid, self.uid)
            os.chmod(self.dir, 0o700)
            script = (f'{covers}STAGE={stage!s} && {_hide_root_home()} && rmdir "$STAGE"/* "$STAGE"; '
                      f"{_LO_UP}; exec setpriv "
                      f"--reuid={self.uid} --regid={self.uid} --clear-groups --inh-caps=-all "
                      '--bounding-set=-all --no-new-privs -- "$@"')
            cmd = ["unshare", "--mount", *_NS, "--", "sh", "-c", script, "sh", *python]
        elif self.mode == "userns":
            cmd = ["unshare", "--user", "--map-root-user", "--mount", *_NS, "--", "sh", "-c",
                   f'{covers}{_LO_UP}; exec "$@"', "sh", *python]
        else:
            cmd = python
        self._errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._errors, cwd=self.dir, env=env,
                                     start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = b""
        self._ids = itertools.count()

    def request(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and read its reply, by ``deadline`` (``time.monotonic()``);
        :class:`TimeoutError` past it, :class:`SandboxDied` if the child ends."""
        ident = next(self._ids)
        self._send(json.dumps({**message, "id": ident}).encode() + b"\n", deadline)
        while True:
            reply = self._line(deadline)
            try:
                found = json.loads(reply)
            except ValueError as exc:
                raise SandboxDied(f"an unreadable reply: {reply[:80]!r}") from exc
            if isinstance(found, dict) and found.get("id") == ident:
                return found

    def _send(self, data: bytes, deadline: float) -> None:
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the sandbox stopped reading")
            _, ready, _ = select.select([], [self._in], [], left)
            if ready:
                try:
                    data = data[os.write(self._in, data):]
                except BrokenPipeError as exc:
                    raise SandboxDied(self._why()) from exc

    def _line(self, deadline: float) -> bytes:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            ready, _, _ = select.select([self._out], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self._out, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise SandboxDied(self._why())
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY:
                raise SandboxDied("a reply longer than the grader reads")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _why(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        code = self.proc.returncode
        return "the sandbox ended" + (f" (exit status {code})" if code is not None else "")

    def output(self, limit: int = 2000) -> str:
        """The tail of what the learner's code printed."""
        with contextlib.suppress(OSError):
            return (self.dir / "output.txt").read_text(errors="replace")[-limit:]
        return ""

    def close(self) -> None:
        """Kill the whole tree (the namespace goes with its first process), then tidy up."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.uid is not None:
            _kill_uid(self.uid)
        if self._uid_lock is not None:  # only now may another sandbox take the uid
            os.close(self._uid_lock)
            self._uid_lock = None
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close() if stream else None
        self._errors.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_uid(uid: int) -> None:
    """Whatever still runs as the sandbox's own uid (nothing should: belt and braces)."""
    for _ in range(20):
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        found.append(int(entry.name))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


# -- the child ------------------------------------------------------------------------

def _limits() -> None:
    import resource

    memory = int(os.environ.get("WSKIT_SANDBOX_MEMORY", MEMORY))
    cpu = int(os.environ.get("WSKIT_SANDBOX_CPU", CPU_SECONDS))
    wanted = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu),
              (resource.RLIMIT_FSIZE, 64 << 20), (resource.RLIMIT_CORE, 0)]
    if os.getuid() >= _UID_BASE:  # a uid of its own: count only its processes
        wanted.append((resource.RLIMIT_NPROC, 256))
    for kind, value in wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(kind, (value, value))


def _child() -> None:
    """Entered by the sandbox's ``python -I -c``: move the protocol off fds 0/1 (the
    learner's prints go to ``output.txt``), set the limits, then answer requests."""
    import asyncio
    import builtins

    if "" in sys.path:
        sys.path.remove("")
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _limits()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    namespace: dict[str, Any] = {"__name__": "__learner__", "__builtins__": builtins}
    objects: list[Any] = []
    rngs: dict[int, Any] = {}
    dumps = json.dumps  # the grader's own, taken before any learner code runs
    for raw in proto_in:
        try:
            request = json.loads(raw)
            reply: dict[str, Any] = {"id": request.get("id")}
            try:
                value = _serve(request, namespace, objects, rngs, loop)
                reply["ok"] = value
                text = dumps(reply)
            except BaseException as exc:  # the learner's code: anything at all
                if isinstance(exc, KeyboardInterrupt):
                    raise
                text = dumps({"id": reply["id"], "error": type(exc).__name__,
                              "text": _describe(exc)})
        except ValueError:
            continue
        data = (text + "\n").encode()
        while data:
            try:
                data = data[os.write(proto_out, data):]
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    os._exit(3)


def _describe(exc: BaseException) -> str:
    try:
        return repr(exc)[:2000]
    except Exception:
        return type(exc).__name__


def _serve(request: dict[str, Any], namespace: dict[str, Any], objects: list[Any],
           rngs: dict[int, Any], loop: Any) -> Any:
    import inspect
    import random

    def arg(value: Any) -> Any:
        if isinstance(value, dict) and "__rng__" in value:
            if "state" in value:
                version, internal, gauss = value["state"]
                rng = random.Random()
                rng.setstate((version, tuple(internal), gauss))
                rngs[value["__rng__"]] = rng
            return rngs[value["__rng__"]]
        return value

    def settle(value: Any) -> Any:
        return loop.run_until_complete(value) if inspect.isawaitable(value) else value

    op = request["op"]
    args = [arg(a) for a in request.get("args", [])]
    if op == "load":
        errors = []
        for n, chunk in enumerate(request["cells"]):
            try:
                exec(compile(chunk, f"<cell {n}>", "exec"), namespace)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                errors.append(_describe(exc))
        return {"errors": errors, "defined": sorted(k for k in namespace if not k.startswith("_")),
                "kinds": {k: "class" if isinstance(v, type) else "callable" if callable(v)
                          else "value" for k, v in namespace.items() if not k.startswith("_")}}
    if op == "call":
        return settle(namespace[request["name"]](*args))
    if op == "many":
        func = namespace[request["name"]]
        return [settle(func(*[arg(a) for a in args])) for args in request["calls"]]
    if op == "new":
        objects.append(namespace[request["name"]](*args))
        return len(objects) - 1
    if op == "method":
        return settle(getattr(objects[request["ref"]], request["method"])(*args))
    if op == "harness":
        from .exercises import harness

        return settle(getattr(harness, request["fn"])(namespace, **request.get("params", {})))
    raise ValueError(f"unknown op {op!r}")
