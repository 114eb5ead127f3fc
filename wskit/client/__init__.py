"""A small WebSocket client of wskit's protocol: async (aio), with a sync facade (sync).

The lesson hooks (a frozen tab, a dropped network, a crashed peer) are in
:mod:`.lessons`; the recovery rules the client follows are sans-I/O, in
:mod:`wskit.core.tracker`.
"""

from __future__ import annotations

from .aio import Client, connect
from .sync import SyncClient

__all__ = ["Client", "SyncClient", "connect"]
