"""What an adapter provides for each WebSocket, and the frames written on it.

:class:`Transport` is the whole contract between a framework and the server: an
adapter (wskit.adapters) wraps its framework's WebSocket object in one, and
nothing under wskit.server imports a framework. :class:`Outgoing` is a server
frame as it is written, encoded at most once however many receive it.
:class:`Continue` finishes, in a task, a send begun outside one (the
connection's eager send), and :func:`close_within` runs a closing handshake
under a deadline.
Kept apart from :mod:`wskit.server.connection`, which decides *when* to write
and close (the outbox, back-pressure, slow consumers): this is only *how*.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Protocol

from ..core.framing import text_frame

__all__ = [
    "Transport", "Outgoing", "Frame", "Continue", "close_within", "text_of", "wire_of",
]


class Transport(Protocol):
    """What an adapter provides for each accepted WebSocket."""

    async def receive(self) -> str | bytes | None:
        """The next data frame: ``str`` for text, ``bytes`` for binary, None once closed.

        A frame over the size limit is the framework's business: it closes the
        connection with 1009 and ``receive`` then returns None.
        """

    def send_text(self, text: str) -> Awaitable[None]:
        """Send one text frame; may block on back-pressure, may raise if the peer is gone.

        An ``async def`` will do; a plain method may also return the framework's own
        awaitable, which saves a coroutine per delivery (the FastAPI adapter does).
        """

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2)."""

    def abort(self) -> None:
        """Drop the TCP connection without a handshake (the peer is not cooperating)."""

    # Optional: ``try_write(wire: bytes) -> bool`` writes a ready-made frame now if
    # the socket can take it without waiting, else returns False (see Connection).


class Outgoing:
    """One server frame, encoded to wire bytes at most once, however many receive it."""

    __slots__ = ("text", "_wire")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = text_frame(self.text.encode())
        return self._wire


Frame = str | Outgoing


def text_of(frame: Frame) -> str:
    """A queued frame's text (what a framework's ``send_text`` takes)."""
    return frame if type(frame) is str else frame.text  # type: ignore[union-attr]


def wire_of(frame: Frame) -> bytes:
    """A queued frame as wire bytes (what ``try_write`` takes), encoded once if shared."""
    if type(frame) is Outgoing:
        return frame.wire
    return text_frame(frame.encode())  # type: ignore[union-attr]


class Continue:
    """Finish, inside a task, a coroutine whose first step ran outside any task.

    ``waiting_on`` is what its first step yielded (the future it waits for); the
    task awaiting this object receives it, and every later step and any exception
    (a cancellation) is passed through, as ``yield from`` would for a fresh one.
    """

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None] | Generator[Any, Any, None],
                 waiting_on: Any) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self.coro, self.waiting_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown into the task: CancelledError
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


async def close_within(transport: Transport, code: int, reason: str, timeout: float) -> bool:
    """Run the closing handshake in a task of its own, for at most ``timeout`` s.

    A task of its own, not ``wait_for``: a framework may raise CancelledError out
    of its close (aiohttp does when a cancelled writer left its shared drain
    future cancelled), and that must not pass for *our* cancellation.
    True if the handshake completed without error.
    """
    task = asyncio.get_running_loop().create_task(transport.close(code, reason))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    return bool(done) and not task.cancelled() and task.exception() is None
