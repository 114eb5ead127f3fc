"""When and how fast a client reconnects: plain code, tested without sockets.

Backoff is exponential with **full jitter** (each wait drawn uniformly from
``[0, min(cap, base * 2**attempt)]``): when an instance dies, its clients do not
all come back in the same millisecond and knock over the survivors (the
"thundering herd"; see AWS's "Exponential Backoff And Jitter").

Which closes are worth a reconnect: the ones that say "not your fault, try
again" (a drop, a restart, a timeout), not the ones that would only happen again
(a bad frame, a refused token, a rate limit).
"""

from __future__ import annotations

import random

from .protocol import CloseCode

__all__ = ["Backoff", "should_reconnect", "RECONNECT", "FINAL"]

#: closes after which a client should reconnect (None: the TCP connection dropped)
RECONNECT: frozenset[int | None] = frozenset({
    None, CloseCode.ABNORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.INTERNAL_ERROR,
    CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER,
    CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SLOW_CONSUMER,
})
#: closes after which reconnecting would only fail again
FINAL: frozenset[int] = frozenset({
    CloseCode.NORMAL, CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_DATA,
    CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG, CloseCode.UNAUTHORIZED,
    CloseCode.RATE_LIMITED, CloseCode.FORBIDDEN,
    CloseCode.TOO_MANY_CONNECTIONS,  # a bound the server set: coming back only adds load
})


def should_reconnect(code: int | None, *, fresh_token: bool) -> bool:
    """Reconnect after a close with ``code``? 4001 only if a new token can be had."""
    if code == CloseCode.UNAUTHORIZED:
        return fresh_token
    return code in RECONNECT


class Backoff:
    """Waits for reconnect attempts: full jitter over a capped exponential."""

    def __init__(self, base: float = 0.25, cap: float = 8.0,
                 rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait before the next attempt; each call counts one attempt."""
        ceiling = min(self.cap, self.base * 2 ** self.attempt)
        self.attempt += 1
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        """Connected again: the next outage starts from ``base``."""
        self.attempt = 0
