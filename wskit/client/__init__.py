"""A small WebSocket client of wskit's protocol: async, with a sync facade."""

from __future__ import annotations

from .aio import Client, SyncClient, connect

__all__ = ["Client", "SyncClient", "connect"]
