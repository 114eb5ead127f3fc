"""One client connection: a bounded outbox, a writer task while it has work, one way to close.

Why an outbox: a WebSocket send can block (the peer stopped reading and the TCP
window is full) or fail (the peer vanished). If a broadcast awaited each send in
turn, as the seed's managers do, one such peer would stall or abort delivery to
everyone after it. Here a broadcast only appends to each receiver's outbox, which
never blocks and never raises; each connection's own writer task does the
awaiting. The outbox is bounded: when it is full the client is not keeping up,
and it is closed with :attr:`CloseCode.SLOW_CONSUMER` (4008) rather than being
allowed to grow the server's memory without limit.

The outbox is bounded twice, in frames (``outbox_limit``) and in characters of
queued text (``outbox_bytes``), whichever fills first. A queued frame may hold
its text and its encoded bytes, so the memory one connection can pin is at most
about ``2 * outbox_bytes`` plus the transport's write buffer; frames of a
broadcast are shared by all receivers, so it is usually far less.

Back-pressure on senders: an outbox past half its bounds is *loaded*. The server
then stops reading the sender whose post loaded it until the loaded outboxes
drain below a quarter (:meth:`Connection.wait_drained`), so one client's burst
slows that client down instead of overflowing everyone else's outbox. A
receiver that does not drain within the grace period is not reading, and only
then is it closed with 4008.

A connection owns its application-level :class:`~wskit.server.heartbeat.Heartbeat`,
as python-websockets' and aiohttp's connections own their keepalive: it starts
with the connection and stops with the first close.

Memory: most connections are idle most of the time, and a server holds tens of
thousands. So an idle connection has no writer task and no outbox: the writer
task exists only while frames wait (it exits once the outbox is empty, and the
next frame that must wait starts a new one), and the outbox deque is made for
the first frame that waits. A frame that need not wait (nothing queued) is
written at once without either: through ``try_write`` where the transport offers
it, else by running the send's first step in place (``_send_eagerly``).

A :class:`~wskit.server.transport.Transport` is the only thing an adapter must
provide; it wraps a framework's WebSocket object. It lives in
:mod:`wskit.server.transport` with the frame that is written on it
(:class:`Outgoing`), apart from the queueing and closing rules of this module.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from ..core.protocol import CloseCode
from ..core.ratelimit import TokenBucket
from .heartbeat import Heartbeat
from .transport import (
    Continue,
    Frame,
    Outgoing,
    Transport,
    close_within,
    text_of,
    wire_of,
)

log = logging.getLogger("wskit.connection")

# Transport, Outgoing and close_within: re-exported from .transport, where they live
__all__ = ["Connection", "Transport", "Outgoing", "close_within"]

_ids = itertools.count(1)


class Connection:
    """A client connection as the server sees it.

    Lifecycle: ``start()`` launches the writer; ``deliver()`` queues frames;
    the first call to ``close_soon()`` or ``close()`` (from anywhere: a full
    outbox, a heartbeat timeout, a failed write, the client leaving, the server
    stopping) wins, calls ``on_close`` exactly once, and tears everything down.
    ``wait_closed()`` returns once no task of this connection is left.
    """

    __slots__ = ("id", "user", "transport", "close_code", "close_reason", "_queue", "_limit",
                 "_byte_limit", "_queued_bytes", "_started", "_writer", "_closer", "_closing",
                 "_on_close", "_close_timeout", "closed_future", "_try_write", "heartbeat",
                 "_drained", "bucket", "frames_out", "reader", "read_cancelled")

    def __init__(self, transport: Transport, user: str, *, outbox_limit: int = 1024,
                 outbox_bytes: int = 1 << 20, close_timeout: float = 2.0,
                 on_close: Callable[[Connection], None] | None = None,
                 heartbeat: tuple[float, float] | None = None) -> None:
        self.id = f"c{next(_ids)}"
        self.user = user
        self.transport = transport
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue: deque[Frame] | None = None  # made when a frame first has to wait
        self._limit = outbox_limit
        self._byte_limit = outbox_bytes
        self._queued_bytes = 0
        self._started = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        self._on_close = on_close
        self._close_timeout = close_timeout
        #: resolved when closing begins (tests wait on it)
        self.closed_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._try_write = getattr(transport, "try_write", None)
        self._drained: asyncio.Future[None] | None = None
        #: frames the writer task has handed to the transport (progress, for back-pressure)
        self.frames_out = 0
        #: the app-level heartbeat (``(interval, timeout)``), started with the writer
        self.heartbeat: Heartbeat | None = None
        if heartbeat is not None:
            self.heartbeat = Heartbeat(self.deliver, self.close_soon, *heartbeat)
        #: the connection's rate limit (:class:`wskit.core.ratelimit.TokenBucket`), if any
        self.bucket: TokenBucket | None = None
        #: the task reading this connection (the server's) while it reads; a close
        #: from any other task cancels it and sets ``read_cancelled``
        self.reader: asyncio.Task[Any] | None = None
        self.read_cancelled = False

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<Connection {self.id} user={self.user!r} {state} outbox={self.pending}>"

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def pending(self) -> int:
        """Frames waiting in the outbox."""
        return len(self._queue) if self._queue is not None else 0

    @property
    def loaded(self) -> bool:
        """The outbox is past half its bounds: its senders should wait for it."""
        queue = self._queue
        if not queue:  # the common case, asked of every receiver after every post
            return False
        return 2 * len(queue) >= self._limit or 2 * self._queued_bytes >= self._byte_limit

    def _below_low_water(self) -> bool:
        return (4 * self.pending <= self._limit
                and 4 * self._queued_bytes <= self._byte_limit)

    def drained_future(self) -> asyncio.Future[None] | None:
        """A future resolved once the outbox is down to a quarter of its bounds or
        the connection closes; None if that is already so. Shared by every waiting
        sender: await it through ``asyncio.wait`` or ``shield``, never cancel it."""
        if self._closing or self._below_low_water():
            return None
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        return self._drained

    def _signal_drained(self) -> None:
        drained = self._drained
        if drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    def start(self) -> None:
        """Begin sending (frames delivered before wait until now) and pinging."""
        self._started = True
        if self.pending:
            self._start_writer()
        if self.heartbeat is not None:
            self.heartbeat.start()

    def _start_writer(self, first: Continue | None = None) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(first), name=f"wskit-writer-{self.id}")

    def pong(self) -> None:
        """The client answered an app-level ping."""
        if self.heartbeat is not None:
            self.heartbeat.pong()

    # -- sending -------------------------------------------------------------

    def deliver(self, frame: Frame) -> bool:
        """Queue one frame; never blocks, never raises. False if it was not queued.

        When nothing is queued and no writer is busy, the frame is written at
        once: no queue, no task. That is the common case of a broadcast. A
        transport that offers ``try_write`` gets the encoded frame (why an
        ``Outgoing`` shared by all receivers carries its wire bytes); any other
        gets :meth:`_send_eagerly`.
        """
        if self._closing:
            return False
        queue = self._queue
        if not queue and self._writer is None and self._started:
            # nothing waits and no writer is mid-frame: writing now keeps the order
            if self._try_write is None:
                return self._send_eagerly(text_of(frame))
            if self._try_write(wire_of(frame)):
                return True
        if queue is None:
            queue = self._queue = deque()
        size = len(text_of(frame))
        if len(queue) >= self._limit or self._queued_bytes + size > self._byte_limit:
            self.close_soon(CloseCode.SLOW_CONSUMER, f"outbox full ({len(queue)} frames, "
                            f"{self._queued_bytes} bytes): the client is not reading")
            return False
        self._queued_bytes += size
        queue.append(frame)
        if self._writer is None and self._started:
            self._start_writer()
        return True

    def _send_eagerly(self, text: str) -> bool:
        """Run a send's first step here, without a task; a writer task only if it waits.

        Nearly every send completes without suspending, so a task per send (for a
        broadcast to N idle receivers, N tasks: 12% of a FastAPI server's CPU, by
        py-spy) is wasted. This is asyncio's eager task start (Python 3.12), by hand
        because it must work from 3.10 and should not even build the Task. Inline,
        not a helper: it runs once per receiver of every broadcast.
        """
        awaitable = self.transport.send_text(text)
        # a coroutine is stepped as it is; any other awaitable through its iterator
        coro: Any = awaitable if type(awaitable) is CoroutineType else awaitable.__await__()
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            self.frames_out += 1
            return True
        except Exception as exc:  # the peer is gone
            log.debug("write to %s failed: %r", self.id, exc)
            self.close_soon(CloseCode.GOING_AWAY, "write failed", _from_writer=True)
            return False
        # it waits (back-pressure): a writer task finishes it, then the outbox
        self._start_writer(Continue(coro, waiting_on))
        return True

    async def _write_loop(self, first: Continue | None = None) -> None:
        """Send until the outbox is empty, then end: the next waiting frame starts
        a new writer (an idle connection holds no task). ``first``: a send begun
        by :meth:`_send_eagerly` that had to wait, to finish before the outbox."""
        send = self.transport.send_text
        try:
            if first is not None:
                await first
                self.frames_out += 1
            queue = self._queue  # made meanwhile if frames came while that send waited
            while queue:
                text = text_of(queue.popleft())
                self._queued_bytes -= len(text)
                await send(text)
                self.frames_out += 1
                if self._drained is not None and self._below_low_water():
                    self._signal_drained()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer is gone: ConnectionResetError, RuntimeError, ...
            log.debug("write to %s failed: %r", self.id, exc)
            self.close_soon(CloseCode.GOING_AWAY, "write failed", _from_writer=True)
        finally:
            # no await since the outbox was found empty: a frame delivered from now
            # on sees no writer and starts one
            if self._writer is asyncio.current_task():
                self._writer = None

    # -- closing -------------------------------------------------------------

    def close_soon(self, code: int, reason: str = "", *, flush: bool = False,
                   _from_writer: bool = False) -> None:
        """Begin closing (once); safe to call from sync code and callbacks.

        ``flush`` sends what is already queued before the close frame (a server
        shutting down); otherwise queued frames are dropped (a client that is too
        slow or silent would never read them anyway).
        """
        if self._closing:
            return
        self._closing = True
        self.close_code = int(code)
        self.close_reason = reason
        if not flush and self._queue is not None:
            self._queue.clear()  # a writer mid-frame finishes that frame, then ends
            self._queued_bytes = 0
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.closed_future.set_result(None)
        self._signal_drained()
        if self._on_close is not None:
            self._on_close(self)
        self._closer = asyncio.get_running_loop().create_task(
            self._shutdown(code, reason, skip_handshake=_from_writer), name=f"wskit-close-{self.id}")

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "", *,
                    flush: bool = False) -> None:
        """Close (if not already closing) and wait until nothing of it is left."""
        self.close_soon(code, reason, flush=flush)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        if self._closer is not None:
            # shield: a caller cancelled while waiting must not abandon the teardown
            await asyncio.shield(self._closer)

    async def _shutdown(self, code: int, reason: str, skip_handshake: bool) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            # Let the writer finish the frame in flight (and the queue, when
            # flushing) so the close frame follows whole frames. A peer that does
            # not read for close_timeout is not waited for any longer.
            await asyncio.wait({writer}, timeout=self._close_timeout)
            if not writer.done():
                writer.cancel()
                await asyncio.wait({writer})
                skip_handshake = True
        if skip_handshake:
            self.transport.abort()
            return
        if not await close_within(self.transport, code, reason, self._close_timeout):
            log.debug("close of %s did not complete; aborting", self.id)
            self.transport.abort()
