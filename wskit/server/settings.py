"""Every tunable of a wskit server, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """How a wskit server behaves. All sizes in bytes, all times in seconds.

    ``Settings()`` is a working default; override with keyword arguments or
    :meth:`with_`.
    """

    #: HS256 secret for tokens; None: ``WSKIT_SECRET``, else the dev secret (warns)
    secret: str | None = None
    #: allowed ``Origin`` headers (e.g. ``("http://localhost:8000",)``); None: any.
    #: A request without an Origin header (not a browser) is always allowed.
    origins: tuple[str, ...] | None = None
    #: largest accepted frame; a bigger one closes the connection with 1009
    max_message_size: int = 64 * 1024
    #: frames a connection may have queued before it is closed with 4008
    outbox_limit: int = 1024
    #: characters of text a connection may have queued before it is closed with 4008
    outbox_bytes: int = 1 << 20
    #: how long a sender is held (not read) while its receivers' outboxes are loaded;
    #: a receiver whose outbox has not drained by then is closed with 4008
    slow_reader_grace: float = 1.0
    #: frames a second one connection may send (token bucket); None: no limit
    rate_limit: float | None = None
    #: the bucket's size (frames sent at once); None: twice ``rate_limit``
    rate_burst: int | None = None
    #: messages of history kept per room (offsets, recovery, ``history`` requests);
    #: 0 turns history off (no offsets)
    history_size: int = 100
    #: a room's history expires this long after its last post or read (seconds)
    history_ttl: float = 3600.0
    #: an instance's presence entries expire this long after its last refresh (it
    #: refreshes every third of it), so a killed instance's users vanish within it
    presence_ttl: float = 30.0
    #: members receive ``presence`` join/leave events (a user's first connection in
    #: a room on any instance, its last one leaving)
    presence_events: bool = False
    #: on stop (SIGTERM), how long connections get to take their 1012 close
    drain_timeout: float = 5.0
    #: how long a closing handshake may take before the TCP connection is dropped
    close_timeout: float = 2.0
    #: app-level ``{"type": "ping"}`` period; None turns the app-level heartbeat off
    ping_interval: float | None = 20.0
    #: close with 4002 when a ``pong`` is this late
    ping_timeout: float | None = 20.0
    #: protocol-level (RFC 6455 ping frame) period; None: off
    protocol_ping_interval: float | None = None
    #: protocol-level pong deadline (uvicorn only; aiohttp uses interval / 2)
    protocol_ping_timeout: float | None = None
    #: rooms that exist; None: any valid room id is created on first join
    rooms: frozenset[str] | None = None
    #: posting to a room needs membership (else a ``not_joined`` error frame);
    #: False lets anyone post into any room, as the seed's managers do
    post_requires_join: bool = True
    #: prefix of every backplane channel, so several apps can share one Redis
    namespace: str = "wskit"
    #: a name shown to clients in ``welcome`` frames (e.g. "aiohttp-1")
    instance_name: str | None = None
    #: serve the browser chat page at ``/`` (the page needs a token)
    page: bool = True
    #: ``GET /token?user=NAME`` hands out tokens to anyone: development only
    dev_tokens: bool = False
    #: serve ``GET /metrics`` (Prometheus text format; docs/api.md)
    metrics: bool = True
    #: the HTTP API's key (``Authorization: Bearer KEY``); None: the API is off (404).
    #: Kept out of ``repr`` so that a logged Settings does not leak it
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_message_size < 256:
            raise ValueError("max_message_size must be at least 256 bytes")
        if self.outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        if self.outbox_bytes < self.max_message_size:
            raise ValueError("outbox_bytes must be at least max_message_size")
        if (self.ping_interval is None) != (self.ping_timeout is None):
            raise ValueError("set both ping_interval and ping_timeout, or neither")
        for name in ("ping_interval", "ping_timeout", "protocol_ping_interval",
                     "protocol_ping_timeout", "close_timeout", "slow_reader_grace",
                     "rate_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (use None to turn it off)")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError("api_key must be at least 16 characters (e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.history_size < 0:
            raise ValueError("history_size must be 0 (off) or more")
        if self.history_ttl <= 0 or self.drain_timeout <= 0 or self.presence_ttl <= 0:
            raise ValueError("history_ttl, presence_ttl and drain_timeout must be positive")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError("rate_burst must be at least 1")
        if isinstance(self.origins, str):
            object.__setattr__(self, "origins", (self.origins,))
        if self.rooms is not None and not isinstance(self.rooms, frozenset):
            object.__setattr__(self, "rooms", frozenset(self.rooms))

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)
