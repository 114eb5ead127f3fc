"""The few RFC 6455 bytes wskit writes itself, below the JSON of :mod:`.protocol`.

The frameworks frame everything else. These two exist for speed and for a limit:
a broadcast is framed once for every receiver (:func:`text_frame`), and a close
reason must fit a control frame (:func:`close_reason`).
"""

from __future__ import annotations

__all__ = ["text_frame", "close_reason"]


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented text frame carrying ``payload`` (RFC 6455 5.2).

    Server-to-client frames are never masked (RFC 6455 5.1), so one encoding
    serves every receiver of a broadcast.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def close_reason(reason: str) -> str:
    """``reason`` cut to the 123 bytes of UTF-8 a close frame can carry (RFC 6455 5.5)."""
    raw = reason.encode("utf-8")
    if len(raw) <= 123:
        return reason
    return raw[:123].decode("utf-8", "ignore")
