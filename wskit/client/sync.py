"""The blocking facade: :class:`SyncClient` runs a :class:`~wskit.client.aio.Client`
on one background event loop shared by every sync client, for scripts and the REPL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any

from .aio import Client

__all__ = ["SyncClient"]


class _LoopThread:
    """One background event loop shared by every :class:`SyncClient`."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Awaitable[Any], timeout: float | None) -> Any:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="wskit-client",
                                 daemon=True).start()
                cls._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result(timeout)  # type: ignore[arg-type]


class SyncClient:
    """Blocking facade over :class:`Client`, for scripts and the REPL."""

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self._timeout = kwargs.get("timeout", 5.0)
        self._client: Client = self._run(self._make(target, kwargs))
        self._run(self._client.connect())

    @staticmethod
    async def _make(target: Any, kwargs: dict[str, Any]) -> Client:
        return Client(target, **kwargs)  # built on the loop its queues belong to

    def _run(self, coro: Awaitable[Any], extra: float = 5.0) -> Any:
        return _LoopThread.run(coro, self._timeout + extra)

    def join(self, room: str) -> dict[str, Any]:
        return self._run(self._client.join(room))

    def leave(self, room: str) -> dict[str, Any]:
        return self._run(self._client.leave(room))

    def send(self, room: str, content: str, *, id: str | None = None) -> dict[str, Any]:
        return self._run(self._client.send(room, content, id=id))

    def direct(self, to: str, content: str) -> dict[str, Any]:
        return self._run(self._client.direct(to, content))

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        return self._run(self._client.receive(timeout), extra=(timeout or self._timeout))

    def send_raw(self, data: str | bytes | dict[str, Any]) -> None:
        self._run(self._client.send_raw(data))

    @property
    def welcome(self) -> dict[str, Any]:
        return self._client.welcome

    @property
    def lost(self) -> list[str]:
        """Rooms where messages were lost across a reconnect (``recovered: false``, or
        a new epoch): check it after a reconnect, as an async client awaits events."""
        return list(self._client.lost)

    @property
    def reconnects(self) -> int:
        return self._client.reconnects

    def close(self) -> None:
        self._run(self._client.close())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
