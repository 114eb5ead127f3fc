"""The Redis *store*: history and presence, as scripts, apart from any pub/sub.

A single Redis (:class:`~wskit.backplane.redis.RedisBackplane`) and a Redis
Cluster (:class:`~wskit.backplane.cluster.ClusterBackplane`) store alike: the same
scripts (:mod:`.scripts`), the same keys, only the client (routed by slot on a
cluster), the publish command and the way a script is invoked differ. They
listen differently (one supervised pub/sub connection, or one per shard), which
is why each backplane *composes* this store with its own listener instead of
one inheriting the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from ..core import envelope
from ..core.history import Entry, Page, Retention, new_epoch
from ..exceptions import BackplaneUnavailable
from .base import RoomPost, Sent
from .scripts import append_args, append_keys, runs, sent_of, sources

__all__ = ["RedisStore"]

#: makes a callable script from its source: ``script(keys=[...], args=[...])``
ScriptFactory = Callable[[str], Any]


class RedisStore:
    """History (atomic append, read) and presence on ``client``; a
    :class:`~wskit.backplane.base.PresenceStore`.

    ``where`` names the server in error messages; ``publish`` is the command the
    append script and :meth:`publish` use (``SPUBLISH`` on a cluster); ``failures``
    are what a command Redis could not run raises (each becomes
    :class:`BackplaneUnavailable`); ``script`` registers a script (default: the
    client's ``register_script``, EVALSHA falling back to EVAL); ``lifetime``: see
    the epochs in :mod:`.scripts`.
    """

    def __init__(self, client: Any, where: str, *, publish: str = "PUBLISH",
                 failures: tuple[type[Exception], ...] = (RedisError, OSError),
                 script: ScriptFactory | None = None, lifetime: str = "") -> None:
        self.client = client
        #: names the server's lifetime when Redis cannot tell it (see the epochs
        #: in :mod:`.scripts`): the token of an in-process fakeredis
        self.lifetime = lifetime
        self.where = where
        self.publish_command = publish
        self.failures = failures
        self.sources = sources(publish)
        self._register: ScriptFactory = script or client.register_script
        self._scripts: dict[str, Any] = {}

    def script(self, name: str) -> Any:
        """The registered script ``name`` (registered once, on first use)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._register(self.sources[name])
        return script

    # -- publishing and history ------------------------------------------------

    async def publish(self, channel: str, data: str) -> int:
        try:
            return int(await self.client.execute_command(self.publish_command, channel, data))
        except self.failures as exc:
            raise BackplaneUnavailable(f"publish to {self.where} failed: {exc}") from exc

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        result = (await self.send_run([RoomPost(channel, origin, frame_text, key,
                                                retention, once, sig)]))[0]
        if isinstance(result, BackplaneUnavailable):
            raise result
        assert result is not None
        return result

    async def send_run(self, run: Sequence[RoomPost]) -> list[Sent]:
        """One run (see :func:`~wskit.backplane.scripts.runs`) in one command."""
        first = run[0]
        try:
            if first.key is None:
                await self.publish(first.channel, envelope.encode(
                    first.origin, first.frame_text, sig=first.sig))
                return [None]
            reply = await self.script("append")(
                keys=append_keys(first.key), args=append_args(run, self.lifetime))
        except BackplaneUnavailable as exc:
            return [exc]
        except self.failures as exc:
            return [BackplaneUnavailable(f"append to {self.where} failed: {exc}")] * len(run)
        return sent_of(run, reply, self.where)

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        """The batch in one pipeline on a *single* Redis: one round trip however many
        posts, one command per run of posts to a room (a cluster pipelines by shard:
        :meth:`ClusterBackplane.send <wskit.backplane.cluster.ClusterBackplane.send>`).

        The pipeline starts with SCRIPT LOAD (cheap when the script is cached): an
        EVALSHA can then never meet NOSCRIPT halfway through a batch after Redis
        restarted, which would leave earlier posts unstored and later ones stored.
        """
        batch = runs(posts)
        if len(batch) == 1:
            return await self.send_run(batch[0])
        pipe = self.client.pipeline(transaction=False)
        if any(run[0].key is not None for run in batch):
            pipe.script_load(self.sources["append"])
            sha = self.script("append").sha
        for run in batch:
            first = run[0]
            if first.key is None:
                pipe.execute_command(self.publish_command, first.channel,
                                     envelope.encode(first.origin, first.frame_text,
                                                     sig=first.sig))
            else:
                pipe.evalsha(sha, 4, *append_keys(first.key),
                             *append_args(run, self.lifetime))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except self.failures as exc:
            return [BackplaneUnavailable(f"send to {self.where} failed: {exc}")] * len(posts)
        results: list[Sent] = []
        for run, reply in zip(batch, replies[len(replies) - len(batch):]):
            results += sent_of(run, reply, self.where)
        return results

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        mode, n = ("after", after) if after is not None else (
            ("last", last) if last is not None else ("none", 0))
        args = [new_epoch(), max(1, int(retention.ttl)), mode, n, self.lifetime]
        try:
            top, epoch, oldest, raw, base = await self.script("read")(
                keys=[f"{key}:meta", f"{key}:stream"], args=args)
        except self.failures as exc:
            raise BackplaneUnavailable(f"history read from {self.where} failed: "
                                       f"{exc}") from exc
        # fields: ['d', text] or ['d', text, 'g', sig] (entries written before signing)
        entries = [Entry(int(entry_id.split("-", 1)[0]), fields[1],
                         fields[3] if len(fields) > 3 else "")
                   for entry_id, fields in raw]
        if mode == "last":
            entries.reverse()  # XREVRANGE: newest first
        return Page(str(epoch), int(top), entries, int(oldest), int(base))

    # -- presence (see wskit.server.presence): ``key`` is a room's history key ---

    async def presence_join(self, key: str, user: str, instance: str, ttl: float) -> bool:
        return bool(await self._presence("join", key, [user, instance, ttl]))

    async def presence_leave(self, key: str, user: str, instance: str) -> bool:
        return bool(await self._presence("leave", key, [user, instance]))

    async def presence_refresh(self, key: str, users: Sequence[str], instance: str,
                               ttl: float) -> list[str]:
        return [str(u) for u in await self._presence("refresh", key, [instance, ttl, *users])]

    async def presence_list(self, key: str) -> list[str]:
        members = await self._presence("list", key, [])
        return sorted({json.loads(m)[0] for m in members})

    async def _presence(self, op: str, key: str, args: list[Any]) -> Any:
        try:
            return await self.script(f"presence_{op}")(
                keys=[f"{key}:presence", f"{key}:presence:idx"], args=args)
        except self.failures as exc:
            raise BackplaneUnavailable(
                f"presence {op} on {self.where} failed: {exc}") from exc
