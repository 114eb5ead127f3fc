"""The cluster backplane's parts that talk to single nodes: one pub/sub connection
per primary (:class:`Shard`) and scripts that fall back per node (:class:`NodeScript`).

:class:`~wskit.backplane.cluster.ClusterBackplane` composes them with the
:class:`~wskit.backplane.store.RedisStore`; see its module for why.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

__all__ = ["Shard", "NodeScript", "not_run", "by_slot"]


def not_run(error: Exception) -> bool:
    """A reply saying the command did not run here (safe to retry elsewhere)."""
    return isinstance(error, NoScriptError) or str(error).split(" ", 1)[0] in (
        "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def by_slot(channels: set[str]) -> list[list[str]]:
    slots: dict[int, list[str]] = {}
    for channel in sorted(channels):
        slots.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(slots.values())


class Shard:
    """One pub/sub connection to one primary, and the channels subscribed on it.

    ``dispatch(channel, data)`` is called per message; ``trouble(why)`` once when
    the connection fails or Redis moves a subscribed channel's slot away.
    """

    def __init__(self, node: ClusterNode, options: dict[str, Any],
                 dispatch: Callable[[str, str], None], trouble: Callable[[str], None]) -> None:
        self._dispatch, self._trouble = dispatch, trouble
        self.name = node.name
        self.client = aioredis.Redis(
            host=node.host, port=int(node.port), decode_responses=True,
            retry=Retry(NoBackoff(), 0), socket_connect_timeout=3.0, **options)
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        #: channels we asked to leave: their SUNSUBSCRIBE is not a slot moving away
        self.leaving: set[str] = set()
        self.confirm: dict[str, asyncio.Future[None]] = {}
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    async def change(self, add: set[str], remove: set[str]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        waits = [self.confirm.setdefault(ch, loop.create_future()) for ch in add]
        # recorded first: the listener may read the confirmations before we resume
        self.channels = (self.channels | add) - remove
        self.leaving |= remove
        # one command per slot: SSUBSCRIBE refuses channels of several slots (CROSSSLOT)
        for group in by_slot(add):
            await self.pubsub.ssubscribe(*group)
        for group in by_slot(remove):
            await self.pubsub.sunsubscribe(*group)
        if self.task is None:
            self.task = loop.create_task(self._listen(), name=f"wskit-shard-{self.name}")
        return waits

    async def _listen(self) -> None:
        try:
            while True:
                msg = await self.pubsub.get_message(timeout=None)
                if msg is None:
                    continue
                kind, channel = msg["type"], msg["channel"]
                if kind == "smessage":
                    self._dispatch(channel, msg["data"])
                elif kind == "ssubscribe":
                    fut = self.confirm.pop(channel, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif kind == "sunsubscribe" and channel in self.leaving:
                    self.leaving.discard(channel)
                elif kind == "sunsubscribe" and channel in self.channels:
                    # we did not ask: Redis moved the slot elsewhere (resharding, failover)
                    self._trouble(f"{channel} moved away from {self.name}")
                    return
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if not self.closing:
                self._trouble(f"lost {self.name}: {exc or type(exc).__name__}")

    async def close(self) -> None:
        self.closing = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})
        for fut in self.confirm.values():
            fut.cancel()
        try:
            await self.pubsub.aclose()
            await self.client.aclose()
        except (RedisError, OSError):
            pass


class NodeScript:
    """EVALSHA, falling back to EVAL on the one node that lacks the script.

    redis-py's registered scripts answer NOSCRIPT with SCRIPT LOAD on *every*
    primary, which fails while one of them is down (and a promoted replica starts
    with an empty script cache): the rooms of healthy shards must not depend on it.
    """

    def __init__(self, client: RedisCluster, source: str) -> None:
        self.client, self.source = client, source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.source, len(keys), *keys, *args)
