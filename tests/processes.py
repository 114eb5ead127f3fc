"""``python -m wskit ...`` in a child process, as a user would run it."""

from __future__ import annotations

import asyncio
import signal
import sys


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def first_line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    """The next stdout line; the child's stderr as the failure if it exited instead."""
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise AssertionError((await proc.stderr.read()).decode())
    return line.decode().strip()


async def interrupt(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    """Ctrl-C, then the exit status; killed if it does not exit in time."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode is not None
    return proc.returncode
