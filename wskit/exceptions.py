"""Every exception wskit raises on purpose.

Hierarchy::

    WskitError
    ├── ConfigError             a setting or URL that cannot work (bad backplane URL, ...)
    ├── AuthError               a token is missing, malformed, badly signed or expired
    ├── ProtocolError           a frame breaks the wire protocol (docs/protocol.md)
    │                           carries ``code``, the machine-readable error code
    ├── ServerStartError        a server could not bind or start; raised where it was started,
    │                           so a notebook cell fails instead of the kernel dying
    ├── BackplaneError          the cross-instance bus (Redis, fakeredis) failed
    │   └── BackplaneUnavailable  it cannot be reached right now (refused, dropped, auth)
    └── ClientError             raised by :mod:`wskit.client.aio`
        ├── ServerError           the server answered a request with an error frame
        └── ConnectionClosed      the connection closed; carries ``code`` and ``reason``

``asyncio.TimeoutError`` (``TimeoutError`` on 3.11+) is raised unchanged by the
client's ``receive(timeout=...)``: it is the exception every asyncio user already
expects from a timeout.
"""

from __future__ import annotations


class WskitError(Exception):
    """Base class of every exception wskit raises on purpose."""


class ConfigError(WskitError, ValueError):
    """A setting, argument or URL that cannot work."""


class AuthError(WskitError):
    """A token was missing, malformed, badly signed or expired."""


class ProtocolError(WskitError):
    """A client frame breaks the wire protocol.

    ``code`` is the machine-readable code sent in the error frame (see
    :data:`wskit.core.protocol.ERROR_CODES`); the message is the human sentence.
    """

    def __init__(self, code: str, message: str, ref: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: the frame's ``ref`` when it could be read, so the error answers it
        self.ref = ref


class ServerStartError(WskitError, OSError):
    """A server could not bind its socket or finish starting."""


class BackplaneError(WskitError):
    """The cross-instance message bus failed."""


class BackplaneUnavailable(BackplaneError, ConnectionError):
    """The backplane cannot be reached right now (refused, dropped, bad auth)."""


class ClientError(WskitError):
    """Base class of errors raised by :mod:`wskit.client.aio`."""


class ServerError(ClientError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str, frame: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame = frame or {}


class ConnectionClosed(ClientError, ConnectionError):
    """The WebSocket connection is closed; ``code`` and ``reason`` say why."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
