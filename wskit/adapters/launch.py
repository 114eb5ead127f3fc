"""Framework launchers: run an aiohttp app or an ASGI app (uvicorn) on a bound socket.

They live with the adapters because the adapters are the only code that touches a
framework; :mod:`wskit.runner.serve` binds the socket and keeps the registry, and
calls these to start and stop the framework's server. Each returns
``(stop, unlisten)``: ``unlisten()`` stops accepting connections and leaves open
ones alone (before a drain), ``stop()`` ends the server.

**Handshake timeout** (slowloris): a socket that sends half an HTTP request
must not hold a connection (and a file descriptor) forever. aiohttp's own
``keepalive_timeout`` already runs from the moment a connection is made and
closes a connection still waiting for its request head, so it is set to the
handshake timeout (its default is 3630 s). uvicorn's h11 and httptools
protocols have no timer before the first request, so :class:`HeadDeadline`
wraps uvicorn's protocol and aborts a connection whose first request head
(up to the blank line) has not arrived in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..exceptions import ServerStartError
from ..server.logs import quiet_uvicorn_client_faults

__all__ = ["is_aiohttp_app", "start_aiohttp", "start_uvicorn"]

Stopper = Callable[[], Awaitable[None]]


def is_aiohttp_app(app: Any) -> bool:
    """True for an ``aiohttp.web.Application`` (anything else is taken as ASGI)."""
    from aiohttp import web

    return isinstance(app, web.Application)


async def start_aiohttp(app: Any, sock: socket.socket, close_timeout: float,
                        handshake_timeout: float = 10.0) -> tuple[Stopper, Stopper]:
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=close_timeout,
                           # from connection_made: also the first request head's deadline
                           keepalive_timeout=handshake_timeout)
    await runner.setup()
    site = web.SockSite(runner, sock)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise

    return runner.cleanup, site.stop  # site.stop(): no new connections, open ones stay


class HeadDeadline(asyncio.Protocol):
    """Wraps a server protocol: the connection is aborted unless its first request
    head (through the blank line, RFC 9112 §2.1) arrives within ``timeout`` s.

    Every callback is passed on unchanged; after the head (or an upgrade, where
    uvicorn moves the transport to a WebSocket protocol) the wrapper only forwards.
    """

    __slots__ = ("_inner", "_timeout", "_timer", "_tail", "_transport")

    def __init__(self, inner: asyncio.Protocol, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer, self._tail = None, b""
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.Transport)
            transport.abort()


def _guarded_http(http: str, timeout: float) -> Callable[..., asyncio.Protocol]:
    """A uvicorn ``http`` protocol factory whose protocols have a head deadline."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    protocol_class = import_from_string(HTTP_PROTOCOLS.get(http, http))

    def create(**kwargs: Any) -> asyncio.Protocol:
        return HeadDeadline(protocol_class(**kwargs), timeout)

    return create


def _uvicorn_server_class() -> type:
    import uvicorn

    class EmbeddedUvicorn(uvicorn.Server):
        """uvicorn that reports readiness and leaves signal handling alone."""

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.ready = asyncio.Event()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn would take SIGINT, so "interrupt kernel" would stop the
            # server instead of interrupting the cell; leave it to the host.
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            self.ready.set()

    return EmbeddedUvicorn


async def start_uvicorn(app: Any, sock: socket.socket, close_timeout: float,
                        handshake_timeout: float = 10.0,
                        **options: Any) -> tuple[Stopper, Stopper]:
    import uvicorn

    quiet_uvicorn_client_faults()  # a traceback per invalid UTF-8 frame otherwise
    options["http"] = _guarded_http(options.get("http", "auto"), handshake_timeout)

    config = uvicorn.Config(
        app,
        # explicit: "auto" may pick wsproto, which has no size limit and no pings
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,  # never reconfigure the host's (notebook's) logging
        log_level="warning",
        access_log=False,
        # the peer's address is the client's, as on aiohttp: uvicorn would otherwise take
        # X-Forwarded-For from any loopback peer, so one local process could pick its
        # own "IP" for max_connections_per_ip (behind a proxy, both count the proxy)
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, math.ceil(close_timeout)),  # uvicorn takes whole seconds
        **options,
    )
    userver = _uvicorn_server_class()(config)

    async def run() -> None:
        try:
            await userver.serve(sockets=[sock])
        except SystemExit as exc:
            # A SystemExit escaping a task stops the whole event loop (the kernel).
            raise ServerStartError(f"uvicorn failed to start (exit status {exc.code})") from None

    task = asyncio.get_running_loop().create_task(run(), name="wskit-uvicorn")
    ready = asyncio.ensure_future(userver.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        await task  # raises the start error
        raise ServerStartError("uvicorn stopped before it started")

    async def stop() -> None:
        userver.should_exit = True
        await task

    async def unlisten() -> None:
        for server in userver.servers:  # asyncio.Server: close() stops accepting only
            server.close()

    return stop, unlisten
