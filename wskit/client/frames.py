"""What the client received, on its way to the application.

:func:`decode` reads a server frame leniently; :class:`Inbox` queues frames for
``receive()`` and ``async for``, then one end marker that every later reader sees.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Inbox", "decode"]

Frame = dict[str, Any]
_END = object()


def decode(text: str) -> Frame | None:
    """A server frame as a dict, or None if it is not a JSON object.

    A client must survive whatever a server (or a proxy, or a lesson's broken
    server) sends: one odd frame is skipped, not fatal to the reader.
    """
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


class Inbox:
    """Frames not taken by a request's reply, in arrival order, then the end."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, frame: Frame) -> None:
        self._queue.put_nowait(frame)

    def end(self) -> None:
        """No more frames: once the queued ones are taken, every get returns None."""
        self._queue.put_nowait(_END)

    async def get(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None at the end; ``TimeoutError`` after ``timeout``."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is _END:
            self._queue.put_nowait(_END)  # every later get sees it too
            return None
        return item  # type: ignore[no-any-return]

    def drain(self) -> list[Frame]:
        """Every frame queued now, without waiting (not the end marker)."""
        frames = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _END:
                self._queue.put_nowait(_END)
                break
            frames.append(item)
        return frames

    async def __aiter__(self) -> AsyncIterator[Frame]:
        while (frame := await self.get()) is not None:
            yield frame
