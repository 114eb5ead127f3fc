"""Who wrote an envelope: HMAC signatures on the backplane (docs/architecture.md, note 27).

Anyone who can PUBLISH on the Redis that instances share can write any envelope
with any origin; anyone who can write its keys can add history entries. Each
instance therefore signs what it writes, with HMAC-SHA256 (RFC 2104) over the
channel and the frame's text, truncated to 128 bits (RFC 2104 section 5 allows
truncation to at least half the hash; 128 bits is what RFC 4868 uses):

* **without a shared key** an instance signs with a random key of its own that
  never leaves its process. Its own envelopes are then *proven* (they take the
  fast path, spliced without parsing), and one that carries its origin but not
  its signature is a forgery and is dropped: its instance id is public
  (``welcome``, ``/healthz``). Other instances' envelopes cannot be proven, so
  they are parsed and checked in full before any client sees them.
* **with a shared key** (``Settings.backplane_key``, ``--backplane-key``) every
  instance and :class:`~wskit.Publisher` signs with it, and an envelope or a
  history entry without its signature is dropped: a Redis user without the key
  cannot make a message from alice.

The signature binds the words to a channel (a post cannot be moved to another
room), not to an offset: the offset is given inside Redis by the append script,
which holds no key. Someone who can PUBLISH can therefore *replay* a signed post
(the same words, id and time), never write a new one.

Plain code, no I/O.
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["Signer", "SIG_CHARS", "MIN_KEY_CHARS"]

#: length of a signature on the wire (hex of 16 bytes)
SIG_CHARS = 32
#: the shortest shared key accepted
MIN_KEY_CHARS = 16


class Signer:
    """Signs and proves envelopes with one key: ``shared`` or, when None, a random
    key private to this object (this instance)."""

    def __init__(self, shared: str | None = None) -> None:
        if shared is not None and len(shared) < MIN_KEY_CHARS:
            raise ValueError(f"a backplane key has at least {MIN_KEY_CHARS} characters")
        #: True when every writer holds the key: unsigned envelopes are refused
        self.shared = shared is not None
        self._key = shared.encode() if shared is not None else secrets.token_bytes(32)

    def sign(self, channel: str, frame_text: str) -> str:
        # the channel's length first: no (channel, text) pair can spell another
        message = f"{len(channel)}:{channel}{frame_text}".encode()
        return hmac.digest(self._key, message, "sha256")[:16].hex()

    def proves(self, channel: str, frame_text: str, sig: str | None) -> bool:
        """Whether ``sig`` is this key's signature of ``frame_text`` on ``channel``."""
        return sig is not None and hmac.compare_digest(self.sign(channel, frame_text), sig)

    def __repr__(self) -> str:  # never the key
        return f"Signer(shared={self.shared})"
