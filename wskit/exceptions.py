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
    └── ClientError             raised by :mod:`wskit.client`
        ├── ClientStateError      a call the client cannot make now (not connected, no
        │                         ``welcome``); also a RuntimeError, as it was before
        ├── ServerError           the server answered a request with an error frame
        └── ConnectionClosed      the connection closed; carries ``code`` and ``reason``
            ├── ConnectionClosedOK      closed with 1000 or 1001, or a close frame without
            │                           a code: a goodbye, nothing went wrong
            └── ConnectionClosedError   any other code (1012 drain, 4001, 4008...), or
                                        none at all (1006: the TCP connection dropped)

``ConnectionClosed`` is split as python-websockets splits it, so that code can
tell "it said goodbye" from "it broke" without a table of close codes; catching
the base class still catches both. ``ConfigError`` is also a ``ValueError`` and
``ServerStartError`` an ``OSError``, so callers written against the built-in
types keep working.

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


class ClientStateError(ClientError, RuntimeError):
    """The client cannot do that now: not connected yet, or the server sent no ``welcome``."""


class ServerError(ClientError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str, frame: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame = frame or {}


class ConnectionClosed(ClientError, ConnectionError):
    """The WebSocket connection is closed; ``code`` and ``reason`` say why.

    The client raises one of the two subclasses (:meth:`of` picks it); this base
    class is what to catch for "closed, whichever way".
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason

    @staticmethod
    def of(code: int | None, reason: str = "") -> ConnectionClosed:
        """:class:`ConnectionClosedOK` for a goodbye, else :class:`ConnectionClosedError`."""
        cls = ConnectionClosedOK if code in CLOSED_OK else ConnectionClosedError
        return cls(code, reason)


class ConnectionClosedOK(ConnectionClosed):
    """Closed with 1000 (normal) or 1001 (going away), or a close frame without a code."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with any other code, or with none: the connection dropped (1006)."""


#: close codes that make a :class:`ConnectionClosedOK`: 1000, 1001, and a close frame
#: without a code (RFC 6455 7.1.5 calls that 1005; aiohttp reports it as 0)
CLOSED_OK: frozenset[int | None] = frozenset({1000, 1001, 1005, 0})
