"""Framework launchers: run an aiohttp app or an ASGI app (uvicorn) on a bound socket.

They live with the adapters because the adapters are the only code that touches a
framework; :mod:`wskit.runner.serve` binds the socket and keeps the registry, and
calls these to start and stop the framework's server. Each returns
``(stop, unlisten)``: ``unlisten()`` stops accepting connections and leaves open
ones alone (before a drain), ``stop()`` ends the server.
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


async def start_aiohttp(app: Any, sock: socket.socket,
                        close_timeout: float) -> tuple[Stopper, Stopper]:
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=close_timeout)
    await runner.setup()
    site = web.SockSite(runner, sock)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise

    return runner.cleanup, site.stop  # site.stop(): no new connections, open ones stay


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
                        **options: Any) -> tuple[Stopper, Stopper]:
    import uvicorn

    quiet_uvicorn_client_faults()  # a traceback per invalid UTF-8 frame otherwise

    config = uvicorn.Config(
        app,
        # explicit: "auto" may pick wsproto, which has no size limit and no pings
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,  # never reconfigure the host's (notebook's) logging
        log_level="warning",
        access_log=False,
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
