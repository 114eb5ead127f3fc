"""A per-connection token bucket: how many frames a client may send, and when.

Plain code with an injected clock, so it is tested without sockets or sleeps.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
each frame takes one. A frame that finds the bucket empty is refused (the
server answers it with a ``rate_limited`` error frame and drops it). A client
that keeps sending into an empty bucket is abusing it rather than bursting:
once more than ``burst`` frames in a row have been refused, :meth:`take`
answers :data:`CLOSE`, and the server closes with 4029.
"""

from __future__ import annotations

import enum

__all__ = ["TokenBucket", "Verdict"]


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    CLOSE = "close"


class TokenBucket:
    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_strikes")

    def __init__(self, rate: float, burst: int | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, int(2 * rate))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._tokens = float(self.burst)
        self._stamp = now
        self._strikes = 0

    def take(self, now: float) -> Verdict:
        """Spend one token at time ``now`` (seconds, monotonic)."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._strikes = 0
            return Verdict.ACCEPT
        self._strikes += 1
        return Verdict.CLOSE if self._strikes > self.burst else Verdict.REFUSE

    def retry_after(self) -> float:
        """Seconds until the next token (for the error message)."""
        return max(0.0, (1.0 - self._tokens) / self.rate)
