"""SIGINT and SIGTERM as a graceful stop, for programs that serve until told not to."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stopping: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones


def stop_on_signals(stop: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run ``stop()`` on SIGTERM (a deploy) or the first Ctrl-C; returns an undo.

    Ctrl-C is handled on the loop because, left to ``asyncio.run``, the
    KeyboardInterrupt lands wherever the loop happens to be (on Python 3.10,
    possibly inside a library's ``async with lock`` or a socket write), and the
    shutdown then waits on that lock forever: the process never exits. After the
    first Ctrl-C, a second one interrupts at once, as Python's own handler does.

    Where the loop cannot take signals (not the main thread, Windows' loop),
    nothing is installed and signals behave as Python's defaults.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGINT and sig in installed:
            loop.remove_signal_handler(sig)  # the next Ctrl-C: KeyboardInterrupt
            installed.remove(sig)
        task = loop.create_task(stop())
        _stopping.add(task)
        task.add_done_callback(_stopping.discard)

    for sig in _SIGNALS:
        # NotImplementedError: Windows' loop; ValueError/RuntimeError: not the main thread
        with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)

    def undo() -> None:
        for sig in list(installed):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        installed.clear()

    return undo
