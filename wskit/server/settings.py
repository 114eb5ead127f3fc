"""Every tunable of a wskit server, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import ConfigError
from ..security.signing import MIN_KEY_CHARS

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """How a wskit server behaves. All sizes in bytes, all times in seconds.

    ``Settings()`` is a working default; override with keyword arguments or
    :meth:`with_`. A value that cannot work raises :class:`~wskit.exceptions.ConfigError`
    (a ``ValueError`` too), naming the field.
    """

    #: HS256 secret for tokens (32 bytes or more); None: ``WSKIT_SECRET``, else the
    #: development secret (warns; ``serve`` allows it on loopback only)
    secret: str | None = None
    #: allowed ``Origin`` headers (e.g. ``("https://chat.example.com",)``; ``"*"``: any);
    #: None: same-origin only (``Origin`` host equal to ``Host``). A request without an
    #: Origin header (not a browser) is always allowed. A refused one gets HTTP 403.
    origins: tuple[str, ...] | None = None
    #: accept permessage-deflate (RFC 7692) when a client offers it, as every browser
    #: does. Off by default on both frameworks: each compressed connection keeps two
    #: zlib contexts (tens of KB), and a broadcast is then compressed once per receiver
    #: instead of encoded once for all (docs/benchmarks.md has the measured cost)
    compression: bool = False
    #: what a post's ``content`` may be: ``"text"`` (a string), or ``"json"`` (a string
    #: or a JSON object, for an application whose posts are structured: a card, a
    #: move); ``on_post`` can narrow it per room
    content_type: str = "text"
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
    #: this instance replays what its bus subscription missed to its members (a
    #: backplane and history on; wskit.server.positions); off, clients see the jump in
    #: offsets and repair it themselves, as wskit.Client does
    room_repair: bool = True
    #: every this many seconds each room's last delivered offset is compared with the
    #: store's top, and what this instance missed is replayed (a backplane and history
    #: on); 0: only on a jump, a join and a listener reconnect (wskit.server.positions)
    position_check: float = 10.0
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
    #: an identity provider's JWKS URL: RS256/ES256 tokens signed by its keys are
    #: accepted, and HS256 tokens no longer are
    jwks_url: str | None = None
    #: the ``aud`` a token must carry; None: a token with an ``aud`` is refused
    audience: str | None = None
    #: the ``iss`` a token must carry; None: not checked
    issuer: str | None = None
    #: longest accepted token lifetime ``exp - iat`` in seconds (``iat`` then
    #: required); None: no maximum
    max_token_lifetime: float | None = None
    #: host names that ``/healthz`` and ``/token`` answer besides IP literals,
    #: ``localhost`` and the host bound (DNS rebinding guard)
    allowed_hosts: tuple[str, ...] | None = None
    #: seconds a new TCP connection has to send a complete request head (the
    #: WebSocket handshake); slower ones are dropped (slowloris)
    handshake_timeout: float = 10.0
    #: the authorization policy by name (docs/authorization.md): "open" lets every
    #: user do everything, "claims" reads the token's "rooms" claim; None: "open" here,
    #: while ``wskit.serve`` picks "claims" for any address but loopback
    authorize: str | None = None
    #: a connection whose token expires without a ``refresh`` is closed with 4001 this
    #: long after its ``exp`` (seconds; clock skew between issuer and server)
    token_grace: float = 0.0
    #: rooms one connection may be in at once (as Centrifugo's 128); None: no bound
    max_rooms_per_connection: int | None = 128
    #: connections one user may hold on this instance; None: no bound (load tests and
    #: tabs share a user). Over it: close 4009
    max_connections_per_user: int | None = None
    #: connections one client IP may hold on this instance; None: no bound (offices
    #: share an IP). Over it: close 4009
    max_connections_per_ip: int | None = None
    #: serve ``GET /metrics`` (Prometheus text format; docs/api.md)
    metrics: bool = True
    #: the HTTP API's key (``Authorization: Bearer KEY``); None: the API is off (404).
    #: Kept out of ``repr`` so that a logged Settings does not leak it
    api_key: str | None = field(default=None, repr=False)
    #: the key every instance (and wskit.Publisher) of one app shares to sign its
    #: backplane envelopes and history entries: unsigned ones are then dropped, so a
    #: Redis user without it cannot write a message from alice (wskit.security.signing).
    #: None: each instance signs with a private random key (its own are proven)
    backplane_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.content_type not in ("text", "json"):
            raise ConfigError(f"content_type is 'text' or 'json', not {self.content_type!r}")
        if self.max_message_size < 256:
            raise ConfigError("max_message_size must be at least 256 bytes")
        if self.outbox_limit < 1:
            raise ConfigError("outbox_limit must be at least 1")
        if self.outbox_bytes < self.max_message_size:
            raise ConfigError("outbox_bytes must be at least max_message_size")
        if (self.ping_interval is None) != (self.ping_timeout is None):
            raise ConfigError("set both ping_interval and ping_timeout, or neither")
        for name in ("ping_interval", "ping_timeout", "protocol_ping_interval",
                     "protocol_ping_timeout", "close_timeout", "slow_reader_grace",
                     "rate_limit", "handshake_timeout", "max_token_lifetime"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive (use None to turn it off)")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ConfigError("api_key must be at least 16 characters (e.g. "
                              "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.backplane_key is not None and len(self.backplane_key) < MIN_KEY_CHARS:
            raise ConfigError(f"backplane_key must be at least {MIN_KEY_CHARS} characters")
        if self.history_size < 0:
            raise ConfigError("history_size must be 0 (off) or more")
        if self.position_check < 0:
            raise ConfigError("position_check must be 0 (off) or more seconds")
        if self.history_ttl <= 0 or self.drain_timeout <= 0 or self.presence_ttl <= 0:
            raise ConfigError("history_ttl, presence_ttl and drain_timeout must be positive")
        if self.token_grace < 0:
            raise ConfigError("token_grace must be 0 or more")
        for name in ("max_rooms_per_connection", "max_connections_per_user",
                     "max_connections_per_ip"):
            bound = getattr(self, name)
            if bound is not None and bound < 1:
                raise ConfigError(f"{name} must be at least 1 (use None for no bound)")
        if self.authorize not in (None, "open", "claims"):
            raise ConfigError("authorize must be 'open' or 'claims' (a function: pass it "
                             "to ChatServer or serve as authorize=)")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ConfigError("rate_burst must be at least 1")
        if isinstance(self.origins, str):
            object.__setattr__(self, "origins", (self.origins,))
        if isinstance(self.allowed_hosts, str):
            object.__setattr__(self, "allowed_hosts", (self.allowed_hosts,))
        if self.jwks_url is not None and self.dev_tokens:
            raise ConfigError("dev_tokens issues HS256 tokens, which a jwks_url server refuses")
        if self.rooms is not None and not isinstance(self.rooms, frozenset):
            object.__setattr__(self, "rooms", frozenset(self.rooms))

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)
