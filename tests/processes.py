"""``python -m wskit ...`` in a child process, as a user would run it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from typing import IO

#: each child's stderr goes to a file, never to a pipe nobody reads: a child that
#: logs more than a pipe holds (64 KiB) would block in write() and never exit
_stderr: dict[int, IO[bytes]] = {}


async def spawn(*args: str) -> asyncio.subprocess.Process:
    log = tempfile.TemporaryFile()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", *args,
        stdout=asyncio.subprocess.PIPE, stderr=log,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
        # Ctrl-C must reach the child even when the tests themselves run in the
        # background (`cmd &` in a script ignores SIGINT, and children inherit that)
        preexec_fn=_default_sigint)
    _stderr[proc.pid] = log
    return proc


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stderr_of(proc: asyncio.subprocess.Process, tail: int = 4000) -> str:
    """What the child wrote to stderr so far (its last ``tail`` characters)."""
    log = _stderr.get(proc.pid)
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode(errors="replace")[-tail:]


async def first_line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    """The next stdout line; the child's stderr as the failure if it exited instead."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        await proc.wait()
        raise AssertionError(stderr_of(proc))
    return line.decode().strip()


async def interrupt(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    """Ctrl-C, then the exit status; killed if it does not exit in time (the failure
    then shows the child's stderr)."""
    try:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.send_signal(signal.SIGABRT)  # faulthandler: where is it stuck?
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
                raise AssertionError(f"did not exit within {timeout}s of SIGINT; its stderr:\n"
                                     + stderr_of(proc)) from None
        assert proc.returncode is not None
        return proc.returncode
    finally:
        log = _stderr.pop(proc.pid, None)
        if log is not None:
            log.close()
