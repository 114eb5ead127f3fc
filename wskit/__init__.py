"""wskit: room-based WebSocket chat servers on aiohttp and FastAPI, for learning.

One folder per layer, each importing only those below it (docs/architecture.md
draws them and says why each boundary is there)::

    runner/      serve() on a notebook's loop or in a thread; cli.py: python -m wskit
    adapters/    aiohttp | FastAPI: create_app(server), launch; the only framework code
    server/      ChatServer (chat), delivery, membership, authority (claims, expiry,
                 bounds), connection (bounded outbox), transport (the adapter contract),
                 heartbeat, recovery (RoomLog), relay (rooms <-> channels), presence,
                 logs, settings
    backplane/   memory:// | fakeredis:// | redis:// | redis-cluster://
    client/      Client (aio) over link (socket, reader, reconnects), dialer and
                 refresh; SyncClient (sync); lesson hooks (lessons)
    security/    tokens (JWT, JWKS), identity, policy (who may do what), origins, redact
    core/        sans-I/O: protocol (requests, frames), codes, framing, hub, history,
                 ratelimit, reconnect, tracker (the client's offsets and dedupe)

Beside the library: testing/ (the server without sockets, the fuzzer), devtools/,
bench/, course/. The public names are the ones below and those in the README's
"Public imports" (tests/test_public_api.py keeps them importable).
"""

from __future__ import annotations

from .client import Client, SyncClient, connect
from .core.hub import Hub
from .core.protocol import CloseCode
from .exceptions import (
    AuthError,
    BackplaneError,
    BackplaneUnavailable,
    ClientError,
    ClientStateError,
    ConfigError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
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
from .widgets.inspector import Inspector, inspect

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
    "ClientError", "ClientStateError", "CloseCode", "ConfigError", "ConnectionClosed",
    "ConnectionClosedError", "ConnectionClosedOK", "Hub", "Inspector", "ProtocolError",
    "Publisher",
    "RunningServer", "ServerError", "run", "ServerStartError", "Settings", "SyncClient",
    "ThreadedServer", "WskitError", "connect", "enable_nested_asyncio", "inspect", "issue_token",
    "running", "serve", "serve_app", "serve_in_thread", "stop_all", "verify_token", "__version__",
]
