"""Reconnect delays with jitter.

When Redis restarts, every instance of a deployment loses its connection at the
same instant; with plain doubling delays they all come back at the same instants
too, a thundering herd on a server that has just started. "Equal jitter" (half the
delay fixed, half random, as redis-py's ``EqualJitterBackoff``) spreads them out
while keeping a floor, so a loop never spins.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``base`` up to ``cap``, each drawn in [d/2, d]."""

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base}, cap={cap}")
        self.base, self.cap = base, cap
        self._delay = base

    def reset(self) -> None:
        """After a success: the next failure starts again from ``base``."""
        self._delay = self.base

    def next(self) -> float:
        """The delay before the next attempt (and the one after it doubles)."""
        half = self._delay / 2
        self._delay = min(self._delay * 2, self.cap)
        return half + random.uniform(0, half)
