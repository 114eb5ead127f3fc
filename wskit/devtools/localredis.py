"""A throwaway ``redis-server`` process on a free port, for tests, notebooks and benchmarks.

    with LocalRedis() as server:          # redis://127.0.0.1:P/0, nothing saved to disk
        ...
        server.stop(); server.start()     # a restart: same port, empty

Ports come from :func:`wskit.devtools.ports.free_port`, below the kernel's ephemeral range
(it says why); another process binding the same port in between (two test runs at
once) is still possible, and :meth:`LocalRedis.start` then tries another port. Needs the
``redis-server`` binary (Debian: ``apt-get install redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import IO

from .ports import free_port

__all__ = ["LocalRedis", "free_port", "spawn", "wait_answering"]


def spawn(port: int, args: Sequence[str], directory: str, log: IO[bytes]
          ) -> subprocess.Popen[bytes]:
    """``redis-server`` on ``127.0.0.1:port``, nothing saved, its log lines to ``log``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, *args],
        stdout=log, stderr=subprocess.STDOUT)


def _answers(port: int) -> bool:
    """A Redis reply to PING on ``port`` (``-NOAUTH`` counts: it is a Redis that
    wants a password). A mere accept is not enough: it may be someone else's port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def wait_answering(proc: subprocess.Popen[bytes], port: int, log: IO[bytes],
                   deadline: float) -> None:
    """Until a Redis answers on ``port``; :class:`OSError` with the server's own
    log lines if the process exits first (``Address already in use``, a bad option)."""
    while True:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise OSError(f"redis-server on port {port} exited: " + " | ".join(tail))
        if _answers(port):
            return
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"redis-server on port {port} did not start")
        time.sleep(0.02)  # polling a process that is starting, bounded by the deadline


class LocalRedis:
    """One ``redis-server`` private to its user, on a free port (never the shared 6379).

    ``args`` are extra ``redis-server`` options (``["--requirepass", "s"]``). The port
    is kept across :meth:`stop` and :meth:`start`, so a restart is the same URL.
    """

    def __init__(self, args: Sequence[str] = (), port: int | None = None) -> None:
        self.args = list(args)
        self.port = port or 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="wskit-redis-")
        deadline = time.monotonic() + timeout
        chosen = not self.port
        for attempt in range(5):
            if chosen:
                self.port = free_port()
            log = tempfile.TemporaryFile()
            try:
                self.proc = spawn(self.port, self.args, self._dir.name, log)
                wait_answering(self.proc, self.port, log, deadline)
                return self
            except OSError as exc:
                self.proc = None
                # another process took the port between the check and the bind
                if not chosen or "in use" not in str(exc) or attempt == 4:
                    self.close()
                    raise
            finally:
                log.close()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Terminate the server (it exits at once: nothing to save)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
