"""The numbers and names of the protocol: WebSocket close codes and error codes.

Their own module because everything refers to them (the server closes with them,
the client decides on them whether to reconnect, the docs list them) and they
change for reasons of their own. :mod:`wskit.core.protocol` re-exports both, as
``protocol.CloseCode`` and ``protocol.ERROR_CODES``; docs/protocol.md is their prose.
"""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "ERROR_CODES"]


class CloseCode(enum.IntEnum):
    """Every WebSocket close code wskit sends, or reports.

    1000-1011 (and 1015) are RFC 6455's (section 7.4.1); 1012-1014 came later,
    through IANA's "WebSocket Close Code Number Registry" that the RFC set up
    (section 11.7). 4000-4999 are reserved by the RFC for applications, and
    wskit uses the ones below.
    """

    NORMAL = 1000  #: the client or server said goodbye
    #: RFC 6455 7.4.1: "an endpoint is going away, such as a server going down or a
    #: browser having navigated away from a page"; wskit sends it when it can no
    #: longer read from or write to a connection (the peer, or the path, has gone)
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  #: a binary frame was received; wskit speaks JSON text only
    #: the connection ended without a close frame (a drop, a crash). Never sent on the
    #: wire (RFC 6455 7.4.1 forbids it in a close frame): an endpoint *reports* it, as
    #: aiohttp's ``close_code`` does after a drop; clients reconnect after it
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007  #: a text frame that is not valid UTF-8 (the framework closes)
    POLICY_VIOLATION = 1008  #: an Origin refused at the handshake (FastAPI's pre-accept close)
    MESSAGE_TOO_BIG = 1009  #: a frame exceeded ``max_message_size``
    INTERNAL_ERROR = 1011  #: a bug in the server; the connection cannot go on
    SERVICE_RESTART = 1012  #: the server is restarting or draining: reconnect (elsewhere)
    #: overloaded, come back later (IANA registry); wskit does not send it, but a proxy
    #: or another server may, and wskit's clients reconnect after it
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001  #: no token, or a malformed, badly signed or expired one
    HEARTBEAT_TIMEOUT = 4002  #: no ``pong`` within ``ping_timeout`` of a ``ping``
    #: the application refused the connection (its ``on_connect`` hook): final
    FORBIDDEN = 4003
    SLOW_CONSUMER = 4008  #: the client stopped reading: its outbox overflowed or did not drain
    RATE_LIMITED = 4029  #: the client kept sending after ``rate_limited`` errors (cf. HTTP 429)
    TOO_MANY_CONNECTIONS = 4009  #: over ``max_connections_per_user`` or ``_per_ip`` (final)


#: Error codes carried by ``{"type": "error", "code": ...}`` frames.
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the frame is not valid JSON",
    "not_an_object": "the frame is JSON but not an object",
    "missing_field": "a required field is absent",
    "wrong_type": "a field has the wrong JSON type",
    "invalid_value": "a field has the right type but an unusable value",
    "unknown_type": "the frame's type is not one wskit knows",
    "unknown_room": "the room is not in the server's list of rooms",
    "not_joined": "posting to, or leaving, a room the connection has not joined",
    "user_offline": "a direct message to a user with no connection anywhere",
    "backplane_unavailable": "not delivered: the cross-instance bus is down and the "
                             "recipient has no connection on this instance",
    "history_unavailable": "history is off on this server (history size 0), or its store "
                           "cannot be reached",
    "rate_limited": "the connection sent frames faster than the server's rate limit; "
                    "this frame was dropped",
    "forbidden": "the authorization policy refused the request (nothing is said about "
                 "whether the room or user exists)",
    "too_many_rooms": "the connection is already in max_rooms_per_connection rooms",
    "invalid_token": "a refresh token was refused (bad, expired, or for another user); "
                     "the connection keeps its current token",
}
