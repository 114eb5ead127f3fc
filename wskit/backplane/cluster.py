"""``redis-cluster://HOST:PORT[,HOST:PORT...]``: a Redis Cluster with sharded pub/sub.

Classic PUBLISH in a Redis Cluster is broadcast to *every* node, so pub/sub load
does not spread however many shards there are. Redis 7's sharded pub/sub
(SPUBLISH/SSUBSCRIBE) keeps a channel on the shard that owns its hash slot, so
each shard carries only its own rooms' messages.

Everything of one room lives in one slot: its channel ``{ns}:{room:R}``, its
history stream and counter ``{ns}:{room:R}:meta|stream`` and its presence set
``{ns}:{room:R}:presence`` share the hash tag ``{room:R}``, so the append script
can store and SPUBLISH in one atomic step on the shard that owns the room.

Subscriptions: one pub/sub connection per primary that owns a wanted channel
(:class:`Shard`). When a shard's connection fails, or Redis moves a channel's
slot away (it then sends an unsolicited SUNSUBSCRIBE), the backplane reloads the
cluster's topology and subscribes every wanted channel again where it now lives,
logged like the single-Redis reconnects. A failover therefore pauses only the
rooms of the failed shard, for about the cluster's ``cluster-node-timeout`` plus
the time to notice (docs/scaling.md gives the measured bound).

redis-py's asyncio ``RedisCluster`` routes commands and scripts by slot; its
``ClusterPubSub`` (redis-py 8.0+) reads the shards' connections round-robin with
a timeout, which would add latency, so listening is done here, one task per shard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from ..core import envelope
from ..core.history import Page, Retention
from ..core.reconnect import Backoff
from ..exceptions import BackplaneUnavailable, ConfigError
from .base import Broker, PresenceStore, RoomPost, Sent
from .redis import CONFIRM_TIMEOUT, redact
from .scripts import append_args, append_keys, runs, sent_of
from .shards import NodeScript, Shard, not_run
from .store import RedisStore

log = logging.getLogger("wskit.backplane")

__all__ = ["ClusterBackplane", "parse_cluster_url"]


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``(startup nodes, connection options)`` of a ``redis-cluster://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis-cluster", "rediss-cluster"):
        raise ConfigError(f"not a Redis Cluster URL: {redact(url)!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"bad node {item!r} in {redact(url)!r}: expected HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss-cluster"}
    if auth:
        user, sep, password = auth.partition(":")
        if sep:
            if user:
                options["username"] = unquote(user)
            options["password"] = unquote(password)
        else:
            options["password"] = unquote(user)
    return nodes, options


#: what a command the cluster could not run raises: an outage. While no node answers,
#: redis-py raises RedisClusterException (no RedisError) from its slot rediscovery.
_FAILURES = (RedisError, RedisClusterException, OSError)


class ClusterBackplane(Broker):
    """A Redis Cluster: the :class:`RedisStore` on a slot-routing client (scripts
    publish with SPUBLISH), and sharded pub/sub, one listener per primary."""

    #: room channels carry the room's hash tag, so they share its history's slot
    hash_tagged_channels = True

    def __init__(self, url: str, *, confirm_timeout: float = CONFIRM_TIMEOUT,
                 max_backoff: float = 0.5) -> None:
        super().__init__()
        self.url = redact(url)
        self.confirm_timeout = confirm_timeout
        self._max_backoff = max_backoff
        self._nodes, self._options = parse_cluster_url(url)
        self._cluster: RedisCluster | None = None
        self._store: RedisStore | None = None
        self._shards: dict[str, Shard] = {}
        self._healthy = asyncio.Event()
        self._repair = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self.reconnects = 0

    # -- lifecycle -----------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    async def wait_healthy(self, timeout: float) -> None:
        await asyncio.wait_for(self._healthy.wait(), timeout)

    @property
    def client(self) -> RedisCluster:
        if self._cluster is None:
            raise RuntimeError("backplane not started")
        return self._cluster

    @property
    def store(self) -> RedisStore:
        if self._store is None:
            raise RuntimeError("backplane not started")
        return self._store

    @property
    def presence(self) -> PresenceStore:
        return self.store

    async def start(self) -> None:
        cluster = self._cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self._nodes],
            decode_responses=True, socket_connect_timeout=3.0, socket_timeout=5.0,
            retry=Retry(EqualJitterBackoff(cap=0.5, base=0.05), 3), **self._options)
        try:
            await asyncio.wait_for(cluster.initialize(), self.confirm_timeout)
        except (*_FAILURES, asyncio.TimeoutError) as exc:
            await cluster.aclose()
            self._cluster = None
            raise BackplaneUnavailable(
                f"cannot reach the Redis Cluster at {self.url}: {exc or type(exc).__name__}"
            ) from exc
        # the same scripts and keys as one Redis, routed by slot
        self._store = RedisStore(cluster, f"the Redis Cluster at {self.url}",
                                 publish="SPUBLISH", failures=_FAILURES,
                                 script=lambda source: NodeScript(cluster, source))
        self._healthy.set()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="wskit-cluster-supervisor")

    async def stop(self) -> None:
        await self.subscriptions.stop()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait({self._supervisor})
            self._supervisor = None
        for shard in list(self._shards.values()):
            await shard.close()
        self._shards.clear()
        self._healthy.clear()
        if self._cluster is not None:
            await self._cluster.aclose()
            self._cluster = self._store = None

    # -- publishing and history (the store's; batches pipelined by shard) --------

    async def publish(self, channel: str, data: str) -> int:
        return await self.store.publish(channel, data)

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        return await self.store.append(key, channel, origin, frame_text, retention, once, sig)

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        return await self.store.read(key, retention, after=after, last=last)

    def lane(self, channel: str) -> str:
        """The shard that owns the channel now: its posts are batched together."""
        try:
            node = self._cluster.get_node_from_key(channel) if self._cluster else None
        except (RedisClusterException, RedisError):
            node = None
        return node.name if node is not None else channel

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        """One shard's posts in one pipeline (one round trip), one command per run of
        posts to a room (:func:`~wskit.backplane.redis.runs`). A run the pipeline
        could not run (NOSCRIPT on a promoted replica, a slot that moved) is retried
        on its own, in order, through the paths that follow redirections."""
        store = self.store
        batch = runs(posts)
        if len(batch) == 1:
            return await store.send_run(batch[0])
        script = store.script("append")
        pipe = self.client.pipeline()
        for run in batch:
            first = run[0]
            if first.key is None:
                pipe.execute_command("SPUBLISH", first.channel,
                                     envelope.encode(first.origin, first.frame_text,
                                                     sig=first.sig))
            else:
                # (redis-py blocks pipe.evalsha() in cluster mode; the command itself
                # is routed by its keys like any other)
                pipe.execute_command("EVALSHA", script.sha, 4, *append_keys(first.key),
                                     *append_args(run))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except _FAILURES as exc:
            # which commands ran is unknown: retrying could store a post twice
            error = BackplaneUnavailable(
                f"send to the Redis Cluster at {self.url} failed: {exc or type(exc).__name__}")
            return [error] * len(posts)
        results: list[Sent] = []
        for run, reply in zip(batch, replies):
            if isinstance(reply, (NoScriptError, ResponseError)) and not_run(reply):
                results += await store.send_run(run)
            else:
                results += sent_of(run, reply, f"the Redis Cluster at {self.url}")
        return results

    # -- subscriptions ---------------------------------------------------------

    async def _apply(self, add: set[str], remove: set[str]) -> bool:
        """Every wanted channel on the shard that owns it now (the whole set: shards
        come and go with the topology); False if a shard could not be reached."""
        cluster = self._cluster
        if cluster is None:
            return False
        wanted = set(self.subscriptions.wanted)
        whole = True
        try:
            owners: dict[str, tuple[ClusterNode, set[str]]] = {}
            for channel in wanted:
                node = cluster.get_node_from_key(channel)
                if node is None:
                    raise RedisClusterException(f"no node owns {channel!r}")
                owners.setdefault(node.name, (node, set()))[1].add(channel)
        except (RedisClusterException, RedisError) as exc:
            self._trouble(f"no owner for a channel: {exc}")
            return False
        for name in [n for n in self._shards if n not in owners]:
            await self._shards.pop(name).close()
        waits: list[asyncio.Future[None]] = []
        for name, (node, channels) in owners.items():
            shard = self._shards.get(name)
            if shard is None:
                shard = self._shards[name] = Shard(node, self._options, self._dispatch, self._trouble)
            try:
                waits += await shard.change(channels - shard.channels,
                                            shard.channels - channels)
            except (RedisError, OSError) as exc:
                # this shard only: the others go on; the supervisor retries it
                if self._shards.get(name) is shard:
                    del self._shards[name]
                await shard.close()
                self._trouble(f"subscribing on {name} failed: {exc}")
                whole = False
        if waits:
            # confirmed: Redis processed SSUBSCRIBE, every later SPUBLISH reaches us
            done, _ = await asyncio.wait(waits, timeout=self.confirm_timeout)
            if len(done) < len(waits):
                log.warning("Redis Cluster did not confirm %d subscription(s) in %gs",
                            len(waits) - len(done), self.confirm_timeout)
        return whole

    def _trouble(self, why: str) -> None:
        """A shard failed or a slot moved: repair in the supervisor."""
        if self._healthy.is_set():
            log.warning("backplane %s: %s; following the cluster's topology, messages of "
                        "the shard's rooms stay on this instance meanwhile", self.url, why)
        self._healthy.clear()
        self._repair.set()

    async def _supervise(self) -> None:
        """Reload the topology and resubscribe everything, with backoff, until whole."""
        while True:
            await self._repair.wait()
            down_since, backoff = time.monotonic(), Backoff(0.05, self._max_backoff)
            while True:
                self._repair.clear()
                assert self._cluster is not None
                try:
                    await self._cluster.nodes_manager.initialize()
                except (RedisError, RedisClusterException, OSError) as exc:
                    log.debug("cluster topology not reloaded yet: %s", exc)
                else:
                    for shard in [s for s in self._shards.values()
                                  if s.task is not None and s.task.done()]:
                        if self._shards.get(shard.name) is shard:
                            del self._shards[shard.name]
                        await shard.close()
                    # whatever the shards hold now, every wanted channel is applied again
                    self.subscriptions.reset(set())
                    await self.subscriptions.settle()
                    if not self._repair.is_set():
                        break
                await asyncio.sleep(backoff.next())  # between attempts
            self.reconnects += 1
            self._healthy.set()
            self._resubscribed()
            log.warning("backplane %s: resubscribed %d channel(s) on %d shard(s) after %.1fs",
                        self.url, len(self.subscriptions.wanted), len(self._shards),
                        time.monotonic() - down_since)
