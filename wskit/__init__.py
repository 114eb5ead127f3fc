"""wskit: room-based WebSocket chat servers on aiohttp and FastAPI, for learning.

Layers, top to bottom (docs/architecture.md draws them)::

    client           wskit.client      a small async client and a sync facade
    runner / cli     wskit.runner      serve() on a notebook's loop, or in a thread
    adapters         wskit.adapters    aiohttp | FastAPI: the only framework code
    server           wskit.server      auth, parsing, rooms, fan-out, heartbeats
    connection       wskit.connection  bounded outbox + one writer per client
    hub, protocol    wskit.hub, .protocol    no I/O: rooms and the wire format
    backplane        wskit.backplane   memory:// | fakeredis:// | redis://
"""

from __future__ import annotations

from .auth import issue_token, verify_token
from .client import Client, SyncClient, connect
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
from .hub import Hub
from .protocol import CloseCode
from .runner import (
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
from .server import ChatServer
from .settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AuthError", "BackplaneError", "BackplaneUnavailable", "ChatServer", "Client",
    "ClientError", "CloseCode", "ConfigError", "ConnectionClosed", "Hub", "ProtocolError",
    "RunningServer", "ServerError", "run", "ServerStartError", "Settings", "SyncClient",
    "ThreadedServer", "WskitError", "connect", "enable_nested_asyncio", "issue_token",
    "running", "serve", "serve_app", "serve_in_thread", "stop_all", "verify_token", "__version__",
]
