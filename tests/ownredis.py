"""A redis-server private to one test: the shared Redis on 6379 is never restarted or flushed."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from wskit.devtools.localredis import LocalRedis

REDIS_SERVER = shutil.which("redis-server")
needs_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server not installed (apt-get install redis-server)")


class OwnRedis(LocalRedis):
    """A redis-server private to one test (the shared one is never touched); start()
    is awaited here because tests call it from the event loop."""

    async def start(self, timeout: float = 10.0) -> OwnRedis:  # type: ignore[override]
        await asyncio.to_thread(LocalRedis.start, self, timeout)
        return self
