"""wskit: room-based WebSocket chat servers on aiohttp and FastAPI, for learning.

Layers, top to bottom (docs/architecture.md draws them)::

    client           wskit.client.aio      a small async client and a sync facade
    runner / cli     wskit.runner.serve      serve() on a notebook's loop, or in a thread
    adapters         wskit.adapters    aiohttp | FastAPI: the only framework code
    server           wskit.server.chat      auth, parsing, rooms, fan-out, heartbeats
    connection       wskit.server.connection  bounded outbox + one writer per client
    hub, protocol    wskit.core.hub, .protocol    no I/O: rooms and the wire format
    backplane        wskit.backplane   memory:// | fakeredis:// | redis://
"""

from __future__ import annotations

from .client.aio import Client, SyncClient, connect
from .core.hub import Hub
from .core.protocol import CloseCode
from .exceptions import (
    AuthError,
    BackplaneError,
    BackplaneUnavailable,
    ClientError,
    ConfigError,
    ConnectionClosed,
    ProtocolError,
    ServerError,
    ServerStartError,
    WskitError,
)
from .publisher import Publisher
from .runner.serve import (
    RunningServer,
    ThreadedServer,
    enable_nested_asyncio,
    run,
    running,
    serve,
    serve_app,
    serve_in_thread,
    stop_all,
)
from .security.tokens import issue_token, verify_token
from .server.chat import ChatServer
from .server.settings import Settings

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``from wskit import exercises``, as the notebooks write it: the course's
    # registry (wskit.course.exercises), imported only when a notebook asks for it
    if name == "exercises":
        import importlib

        return importlib.import_module(".course.exercises", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AuthError", "BackplaneError", "BackplaneUnavailable", "ChatServer", "Client",
    "ClientError", "CloseCode", "ConfigError", "ConnectionClosed", "Hub", "ProtocolError",
    "Publisher", "RunningServer", "ServerError", "run", "ServerStartError", "Settings", "SyncClient",
    "ThreadedServer", "WskitError", "connect", "enable_nested_asyncio", "issue_token",
    "running", "serve", "serve_app", "serve_in_thread", "stop_all", "verify_token", "__version__",
]
