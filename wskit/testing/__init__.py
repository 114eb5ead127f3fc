"""Test doubles for wskit's server and a protocol fuzzer (public: lessons and apps use them).

:class:`MemoryTransport`, :class:`Peer`, :class:`Gate` and :class:`GatedBackplane`
live in :mod:`.memory`; the seeded socket fuzzer in :mod:`.fuzz`.
"""

from __future__ import annotations

from .memory import Gate, GatedBackplane, MemoryTransport, Peer

__all__ = ["MemoryTransport", "Peer", "Gate", "GatedBackplane"]
