"""Start real servers from a notebook cell or a script.

``await wskit.serve(...)`` runs a server on the *running* event loop (a Jupyter
kernel's, or your ``asyncio.run``); ``wskit.serve_in_thread(...)`` runs one on a
loop of its own in a background thread, for plain synchronous scripts.

What this module promises, and why:

* **The socket is bound here, first.** A port in use is a
  :class:`~wskit.exceptions.ServerStartError` raised in your cell. uvicorn would
  otherwise call ``sys.exit``, which inside a kernel kills the kernel; any
  ``SystemExit`` it still raises is turned into that exception too.
* **Port 0 by default**: the OS picks a free port; ``handle.port`` says which.
* **Re-running a cell replaces the server** started under the same ``name``
  instead of failing with "address already in use" (``SO_REUSEADDR`` lets the
  port be bound again at once, despite TIME_WAIT connections).
* **Ctrl-C / "interrupt kernel" keeps working**: uvicorn's signal capture is
  switched off and aiohttp's runner does not install handlers.
* **No loop patching at import.** :func:`enable_nested_asyncio` exists as an
  explicit opt-in for code that calls ``asyncio.run`` inside a notebook.

The framework code that starts aiohttp and uvicorn lives in
:mod:`wskit.adapters.launch`: this module imports no framework.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from ..adapters.launch import is_aiohttp_app, start_aiohttp, start_uvicorn
from ..backplane import Backplane
from ..exceptions import ConfigError, ServerStartError
from ..security.origins import is_loopback, split_host
from ..security.policy import Authorize
from ..security.tokens import issue_token
from ..server.chat import ChatServer
from ..server.settings import Settings
from .signals import stop_on_signals

log = logging.getLogger("wskit.runner")

Framework = Literal["aiohttp", "fastapi"]
FRAMEWORKS = ("aiohttp", "fastapi")

__all__ = ["serve", "serve_app", "serve_in_thread", "RunningServer", "ThreadedServer", "running",
           "run", "LOOPS",
           "stop_all", "enable_nested_asyncio", "FRAMEWORKS"]

#: name -> the server started under that name, so a re-run cell can replace it
_registry: dict[str, RunningServer] = {}


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket, or ServerStartError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartError(f"cannot resolve host {host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class RunningServer:
    """A server running on this event loop. ``await handle.stop()`` ends it.

    ``server`` is the :class:`ChatServer`, or None for an app started with
    :func:`serve_app` (the seed's managers, in lessons).
    """

    def __init__(self, name: str, framework: str, server: ChatServer | None,
                 sock: socket.socket) -> None:
        self.name = name
        self.framework = framework
        self.server = server
        self.loop = asyncio.get_running_loop()
        sockname = sock.getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]
        self._stopper: Any | None = None
        #: stops accepting connections, leaving open ones alone (before the drain)
        self._unlisten: Any | None = None
        self._stopped = asyncio.Event()
        self._finished = asyncio.Event()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket endpoint, without a token: ``ws://127.0.0.1:PORT/ws``."""
        return f"ws://{self.base_url}/ws"

    @property
    def http_url(self) -> str:
        """The chat page."""
        return f"http://{self.base_url}/"

    def token(self, user: str, ttl: float = 3600.0, **claims: object) -> str:
        """A token this server accepts; ``claims`` are added (``rooms={"lobby": "rw"}``)."""
        return issue_token(user, self.server.secret if self.server else None, ttl, **claims)

    def url_for(self, user: str, ttl: float = 3600.0) -> str:
        """The endpoint with a fresh token for ``user`` in the query string."""
        return f"{self.url}?token={self.token(user, ttl)}"

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    async def stop(self) -> None:
        """Drain: stop accepting, close every connection with 1012 (clients reconnect
        elsewhere and recover), then stop the server and disconnect the backplane."""
        if self._stopped.is_set():
            await self._finished.wait()  # a stop under way (SIGTERM): wait for its drain
            return
        self._stopped.set()
        try:
            await self._drain_and_stop()
        finally:
            self._finished.set()

    async def _drain_and_stop(self) -> None:
        if _registry.get(self.name) is self:
            del _registry[self.name]
        if self._unlisten is not None:
            await self._unlisten()
        if self.server is not None:
            await self.server.stop()
        if self._stopper is not None:
            await self._stopper()

    async def serve_forever(self, *, signals: bool = True) -> None:
        """Wait until :meth:`stop` is called (or the task is cancelled, then stop).

        With ``signals`` (the default), SIGTERM and the first Ctrl-C stop the server
        gracefully, clients closed with 1012 and the call returns; see
        :func:`~wskit.runner.signals.stop_on_signals` for why a script needs this.
        """
        undo = stop_on_signals(self.stop) if signals else None
        try:
            await self._stopped.wait()
        finally:
            if undo is not None:
                undo()
            await self.stop()

    async def __aenter__(self) -> RunningServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running"
        return f"<RunningServer {self.name!r} {self.framework} {self.url} {state}>"


async def serve(
    framework: Framework | str = "aiohttp",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "default",
    settings: Settings | None = None,
    backplane: Backplane | str | None = None,
    server: ChatServer | None = None,
    authorize: Authorize | str | None = None,
    **overrides: Any,
) -> RunningServer:
    """Start a wskit server on the running loop and return its handle.

    ``overrides`` are :class:`Settings` fields (``secret=``, ``ping_interval=``...).
    ``backplane``: a URL (``fakeredis://``, ``redis://...``, ``memory://``,
    ``"none"``) or a :class:`Backplane`; by default ``WSKIT_REDIS_URL``, else the
    in-process fakeredis shared by every server of this process.
    ``server``: a ready :class:`ChatServer` (or subclass) to serve instead of
    building one; ``settings``, ``backplane`` and ``overrides`` are then unused.
    ``authorize``: the policy, ``"open"``, ``"claims"`` or a function
    ``authorize(user, claims, action, room_or_user) -> bool`` (sync or async); by
    default ``open`` on loopback and ``claims`` on any other address (secure by
    default: there ``open`` must be asked for), see docs/authorization.md.
    """
    if framework not in FRAMEWORKS:
        raise ConfigError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    previous = _registry.pop(name, None)
    if previous is not None:
        await _stop_elsewhere(previous)
    if server is None:
        if authorize is None and (overrides.get("authorize") or (
                settings.authorize if settings is not None else None)) is None:
            authorize = "open" if is_loopback(host) else "claims"
        server = ChatServer(settings, backplane=backplane, authorize=authorize, **overrides)
    elif not is_loopback(host) and not server.authority.chosen:
        # a ready server gets no default here: off loopback, "open" must be asked for
        raise ConfigError(
            f"this ChatServer has no authorization policy and {host!r} is not loopback: "
            "make it with authorize='claims' (or a policy function), or authorize='open' "
            "to let every user do everything (docs/authorization.md)")
    refuse_exposed_dev_secret(server, host)
    server.allowed_hosts.add(split_host(host)[0])  # /healthz answers the name it binds
    sock = bind_socket(host, port)
    handle = RunningServer(name, framework, server, sock)
    try:
        await server.start()
        s = server.settings
        if framework == "aiohttp":
            from ..adapters.aiohttp import create_app

            handle._stopper, handle._unlisten = await start_aiohttp(
                create_app(server, manage=False), sock, s.close_timeout, s.handshake_timeout)
        else:
            from ..adapters.fastapi import create_app as create_asgi

            handle._stopper, handle._unlisten = await start_uvicorn(
                create_asgi(server, manage=False), sock, s.close_timeout, s.handshake_timeout,
                ws_max_size=s.max_message_size, ws_ping_interval=s.protocol_ping_interval,
                ws_ping_timeout=s.protocol_ping_timeout,
                # uvicorn accepts permessage-deflate by default; wskit decides, the same
                # way on both frameworks (Settings.compression)
                ws_per_message_deflate=s.compression)
    except BaseException:
        sock.close()
        await server.stop()
        raise
    _registry[name] = handle
    log.info("wskit %s server %r listening on %s", framework, name, handle.url)
    return handle


def refuse_exposed_dev_secret(server: ChatServer, host: str) -> None:
    """ConfigError unless the development secret stays on loopback.

    The secret is published in wskit's source: on any other address anyone who
    can reach the port can forge a token for any user.
    """
    if server.verifier.dev_secret and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host!r} with the published development secret (anyone "
            f"could forge tokens): pass --secret (or set WSKIT_SECRET) to a random value of "
            f"32+ bytes, e.g. python -c 'import secrets; print(secrets.token_hex(32))', "
            f"or bind 127.0.0.1")


async def serve_app(app: Any, *, name: str, host: str = "127.0.0.1", port: int = 0,
                    **uvicorn_options: Any) -> RunningServer:
    """Serve any aiohttp ``Application`` or ASGI app the way :func:`serve` does.

    For lessons that run someone else's code (the seed's managers) with the
    same guarantees: port 0, re-run replaces, errors stay in the cell.
    """
    previous = _registry.pop(name, None)
    if previous is not None:
        await _stop_elsewhere(previous)
    framework = "aiohttp" if is_aiohttp_app(app) else "asgi"
    sock = bind_socket(host, port)
    handle = RunningServer(name, framework, None, sock)
    try:
        if framework == "aiohttp":
            handle._stopper, handle._unlisten = await start_aiohttp(app, sock, 2.0)
        else:
            handle._stopper, handle._unlisten = await start_uvicorn(app, sock, 2.0,
                                                                    **uvicorn_options)
    except BaseException:
        sock.close()
        raise
    _registry[name] = handle
    return handle


async def _stop_elsewhere(handle: RunningServer) -> None:
    """Stop a server that may live on another loop (a thread) or a dead one."""
    current = asyncio.get_running_loop()
    if handle.loop is current:
        await handle.stop()
    elif handle.loop.is_running():
        fut = asyncio.run_coroutine_threadsafe(handle.stop(), handle.loop)
        await asyncio.wrap_future(fut)


def running() -> dict[str, RunningServer]:
    """The servers started with :func:`serve` that are still running, by name."""
    return dict(_registry)


async def stop_all() -> None:
    """Stop every server this process started with :func:`serve` on this loop."""
    for handle in list(_registry.values()):
        await _stop_elsewhere(handle)


class ThreadedServer:
    """A server on its own event loop in a daemon thread, for synchronous code."""

    def __init__(self, handle: RunningServer, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread) -> None:
        self.handle = handle
        self._loop = loop
        self._thread = thread

    def __getattr__(self, name: str) -> Any:  # url, port, token, url_for, server...
        return getattr(self.handle, name)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._loop.is_closed():
            if self._loop.is_running():
                asyncio.run_coroutine_threadsafe(self.handle.stop(), self._loop).result(timeout)
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ThreadedServer {self.handle!r}>"


def serve_in_thread(framework: Framework = "aiohttp", *, timeout: float = 15.0,
                    **kwargs: Any) -> ThreadedServer:
    """Like :func:`serve`, on a background thread; returns once it listens.

    Start errors (port in use, Redis unreachable) are raised here.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="wskit-server", daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(serve(framework, **kwargs), loop)
    try:
        handle = future.result(timeout)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
        raise
    return ThreadedServer(handle, loop, thread)


def enable_nested_asyncio() -> None:
    """Opt in to re-entrant event loops (``asyncio.run`` inside a notebook).

    Uses ``nest_asyncio2`` (the maintained fork of the archived nest-asyncio).
    wskit itself never needs it: prefer ``await`` in cells. Refuses uvloop,
    which cannot be patched.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None and type(loop).__module__.startswith("uvloop"):
        raise ConfigError("nested event loops cannot be enabled on uvloop")
    try:
        import nest_asyncio2 as nest  # type: ignore[import-untyped]
    except ImportError:
        try:
            import nest_asyncio as nest  # type: ignore[no-redef,import-not-found]
        except ImportError:
            raise ConfigError("pip install nest-asyncio2 to use enable_nested_asyncio()") from None
    nest.apply(loop) if loop is not None else nest.apply()


#: event loops :func:`run` can use
LOOPS = ("asyncio", "uvloop")
_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T], *, loop: str = "asyncio") -> _T:
    """``asyncio.run(main)``, on the chosen event loop: for scripts and the CLI.

    ``loop="uvloop"`` needs the ``fast`` extra (``pip install 'wskit[fast]'``):
    libuv's loop, whose transports and callbacks cost less per event. A
    notebook's kernel already runs its own loop, so this is never for a
    notebook: there, ``await wskit.serve(...)`` in a cell.
    """
    if loop == "asyncio":
        return asyncio.run(main)
    if loop != "uvloop":
        main.close()
        raise ConfigError(f"unknown event loop {loop!r}: choose one of {', '.join(LOOPS)}")
    try:
        import uvloop
    except ImportError:
        main.close()
        raise ConfigError("the uvloop event loop needs uvloop: pip install 'wskit[fast]' "
                          "(not available on Windows)") from None
    return uvloop.run(main)
