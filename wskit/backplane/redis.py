"""``redis://``, ``rediss://`` and ``fakeredis://`` backplanes (Redis pub/sub).

One channel per room (``{ns}:room:{room}``) and one per user (``{ns}:user:{user}``):
an instance subscribes only to the rooms and users it has local members for, so
it does not receive, decode and discard every message of the whole system (the
seed's single ``chat_messages`` channel does exactly that).

Redis pub/sub is at-most-once: a message published while a subscriber is
disconnected is never delivered to it. The listener here is supervised: when the
connection drops (Redis restarted, ``CLIENT KILL``), it logs once, reconnects with
exponential backoff, resubscribes to every wanted channel and logs the recovery.
Meanwhile local delivery goes on, and a publish that fails raises
:class:`BackplaneUnavailable`, which the server turns into an error frame for the
sender. Nothing is buffered: the gap is visible, not hidden.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisError

from ..core.envelope import LUA_END, LUA_HEAD, LUA_TAIL
from ..core.history import Entry, Page, Retention, new_epoch
from ..exceptions import BackplaneUnavailable, ConfigError
from .base import Backplane, RoomPost, Sent, encode_envelope

log = logging.getLogger("wskit.backplane")

__all__ = ["RedisBackplane", "shared_fake_server"]

_fake_lock = threading.Lock()
_fake_servers: dict[str, Any] = {}

#: how long ``subscribe`` waits for Redis to confirm before carrying on
CONFIRM_TIMEOUT = 5.0

# History: KEY:meta is a hash (s: top offset, e: epoch), KEY:stream a stream whose
# entry ids are "OFFSET-0", so XRANGE by offset needs no index. Offset, storage
# and publication happen in one script: they can never disagree, and Redis
# publishes in offset order. (A cluster needs KEY and the channel in one hash
# slot: KEY carries a hash tag.)
#
# One call stores a run of consecutive posts to the room (ARGV[6..]): the lookups,
# the counter and the expiries are paid once per run, not once per post. Each post
# is still its own stream entry and its own publication, so nothing downstream
# knows a run from single posts. On fakeredis, where every command is emulated in
# Python, a run of 15 costs a quarter per post of 15 single calls (docs/benchmarks.md).
_APPEND = f"""
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', meta, 'e', epoch)
end
local n = #ARGV - 5
local first = redis.call('HINCRBY', meta, 's', n) - n + 1
local origin = ARGV[5]
local head = {LUA_HEAD}
local tail = {LUA_TAIL}
for i = 1, n do
  local offset = first + i - 1
  redis.call('XADD', stream, 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[5 + i])
  redis.call('PUBLISH', ARGV[1], head .. offset .. tail .. ARGV[5 + i] .. {LUA_END})
end
redis.call('EXPIRE', meta, ARGV[3])
redis.call('EXPIRE', stream, ARGV[3])
return {{first, epoch}}
"""

_READ = """
local meta, stream = KEYS[1], KEYS[2]
redis.call('HSETNX', meta, 'e', ARGV[1])
redis.call('EXPIRE', meta, ARGV[2])
local epoch = redis.call('HGET', meta, 'e')
local top = tonumber(redis.call('HGET', meta, 's') or '0')
local mode, n = ARGV[3], tonumber(ARGV[4])
local entries = {}
if mode == 'after' then
  entries = redis.call('XRANGE', stream, (n + 1) .. '-0', '+')
elseif mode == 'last' and n > 0 then
  entries = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', n)
end
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
local oldest = top + 1
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
return {top, epoch, oldest, entries}
"""

# Presence: KEY:presence is a sorted set of JSON [user, instance] members scored by
# their expiry in Redis's own clock (TIME), so instances' clocks never matter.
# KEY:presence:idx holds the same members, all at score 0, so that one user's
# entries are a lexicographic range (every member starts with the JSON of
# [user, ): "is this user still here?" costs O(log n + the user's instances), not a
# scan of the room. (A scan made each join O(room size): 5,000 joins to one room
# never finished.) Both keys share the room's hash tag.
_PRESENCE_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function prefix(user)
  local whole = cjson.encode({user, ''})
  return string.sub(whole, 1, #whole - 3)  -- drop the '""]' of the empty instance
end
local function present(key, idx, user)
  local p = prefix(user)
  for _, m in ipairs(redis.call('ZRANGEBYLEX', idx, '[' .. p, '(' .. p .. '\\255')) do
    local expires = redis.call('ZSCORE', key, m)
    if expires and tonumber(expires) > now then return true end
    if not expires then redis.call('ZREM', idx, m) end
  end
  return false
end
"""

_PRESENCE_JOIN = _PRESENCE_NOW + """
local key, idx, user, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3])
local first = not present(key, idx, user)
local member = cjson.encode({user, ARGV[2]})
redis.call('ZADD', key, now + ttl, member)
redis.call('ZADD', idx, 0, member)
redis.call('EXPIRE', key, math.ceil(ttl) + 1)
redis.call('EXPIRE', idx, math.ceil(ttl) + 1)
if first then return 1 end
return 0
"""

_PRESENCE_LEAVE = _PRESENCE_NOW + """
local key, idx, user = KEYS[1], KEYS[2], ARGV[1]
local member = cjson.encode({user, ARGV[2]})
redis.call('ZREM', key, member)
redis.call('ZREM', idx, member)
if present(key, idx, user) then return 0 end
return 1
"""

_PRESENCE_REFRESH = _PRESENCE_NOW + """
local key, idx, instance, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
for _, m in ipairs(expired) do redis.call('ZREM', idx, m) end
for i = 3, #ARGV do
  local member = cjson.encode({ARGV[i], instance})
  redis.call('ZADD', key, now + ttl, member)
  redis.call('ZADD', idx, 0, member)
end
if #ARGV >= 3 then
  redis.call('EXPIRE', key, math.ceil(ttl) + 1)
  redis.call('EXPIRE', idx, math.ceil(ttl) + 1)
end
local gone, seen = {}, {}
for _, m in ipairs(expired) do
  local user = cjson.decode(m)[1]
  if not seen[user] and not present(key, idx, user) then
    gone[#gone + 1] = user
  end
  seen[user] = true
end
return gone
"""

_PRESENCE_LIST = _PRESENCE_NOW + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""

_SCRIPTS = {"append": _APPEND, "read": _READ, "presence_join": _PRESENCE_JOIN,
            "presence_leave": _PRESENCE_LEAVE, "presence_refresh": _PRESENCE_REFRESH,
            "presence_list": _PRESENCE_LIST}


#: at most this many posts per append script call: Redis runs nothing else while
#: a script runs, so a huge burst is stored in several calls
MAX_RUN = 64


def runs(posts: Sequence[RoomPost]) -> list[list[RoomPost]]:
    """``posts`` in order, cut into what one command sends: consecutive appends to
    one history (same key, channel, origin, retention; at most :data:`MAX_RUN`) go
    in one script call; a publication goes alone."""
    out: list[list[RoomPost]] = []
    for post in posts:
        last = out[-1] if out else None
        if (last is not None and post.key is not None and len(last) < MAX_RUN
                and post.key == last[0].key and post.channel == last[0].channel
                and post.origin == last[0].origin and post.retention == last[0].retention):
            last.append(post)
        else:
            out.append([post])
    return out


def append_args(run: Sequence[RoomPost]) -> list[Any]:
    """The append script's ARGV for a run (see :func:`runs`)."""
    first = run[0]
    assert first.retention is not None
    return [first.channel, first.retention.size, max(1, int(first.retention.ttl)),
            new_epoch(), json.dumps(first.origin), *(post.frame_text for post in run)]


def sent_of(run: Sequence[RoomPost], reply: Any, where: str) -> list[Sent]:
    """What one command's reply says of its run: ``(offset, epoch)`` per post for an
    append (the script returns the first offset), None for a publication, or the
    error, for every post of the run."""
    if isinstance(reply, Exception):
        return [BackplaneUnavailable(f"send to {where} failed: {reply}")] * len(run)
    if run[0].key is None:
        return [None]
    first, epoch = int(reply[0]), str(reply[1])
    return [(first + i, epoch) for i in range(len(run))]


def shared_fake_server(name: str = "") -> Any:
    """The process-wide ``fakeredis.FakeServer`` behind ``fakeredis://NAME``.

    Every client made on it sees the same keys and channels, which is how several
    instances in one process (a notebook) share one fake Redis.
    """
    import fakeredis

    with _fake_lock:
        server = _fake_servers.get(name)
        if server is None:
            server = _fake_servers[name] = fakeredis.FakeServer()
        return server


def redact(url: str) -> str:
    """A URL fit for logs and error messages: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def make_client(url: str) -> aioredis.Redis:
    """A redis.asyncio client for ``url`` with timeouts suited to a backplane."""
    scheme = urlsplit(url).scheme
    # One quick retry heals a pooled connection that went stale when Redis
    # restarted; more would only delay the sender's error frame during an outage.
    options: dict[str, Any] = dict(
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        socket_connect_timeout=3.0,
        socket_timeout=5.0,
    )
    if scheme == "fakeredis":
        import fakeredis

        name = urlsplit(url).netloc
        return fakeredis.FakeAsyncRedis(server=shared_fake_server(name), decode_responses=True)
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a Redis URL: {redact(url)!r}")
    try:
        return aioredis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact(url)!r}: {exc}") from None


def listener_client(client: aioredis.Redis) -> aioredis.Redis:
    """A client like ``client`` (same server, same options) but that never retries.

    redis-py's PubSub quietly reconnects and resubscribes on its first error; the
    backplane wants every drop to reach its supervisor instead, so that it is
    logged, counted, reflected in ``healthy`` and followed by a confirmed
    resubscription.
    """
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs, retry=Retry(NoBackoff(), 0))
    return aioredis.Redis.from_pool(
        aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class RedisBackplane(Backplane):
    """Redis pub/sub with a supervised listener.

    Pass ``client=`` to inject an existing ``redis.asyncio.Redis`` (or a fakeredis
    one); it is then not closed by :meth:`stop`.
    """

    #: what the append script publishes with (a cluster: SPUBLISH)
    _publish_command = "PUBLISH"
    #: what a command that Redis could not run raises: a backplane outage, reported as
    #: :class:`BackplaneUnavailable` (the cluster client adds its own exception)
    _failures: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(self, url: str = "fakeredis://", *, client: aioredis.Redis | None = None,
                 max_backoff: float = 2.0, confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        super().__init__()
        self.confirm_timeout = confirm_timeout
        self.url = redact(url)
        self._raw_url = url
        self._client = client
        self._owns_client = client is None
        self._max_backoff = max_backoff
        self._sub_client: aioredis.Redis | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._subscribed: set[str] = set()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._scripts: dict[str, Any] = {}
        self._listener: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[None] | None = None
        #: Redis confirmed the listener's connection: subscription changes may go out
        self._live = False
        #: live *and* caught up with every channel wanted: what ``healthy`` reports
        self._connected = asyncio.Event()
        #: a private channel that keeps the connection in subscribed mode even
        #: when the instance has no members, so the listener can always block
        self._keepalive = f"wskit:_listener:{uuid.uuid4().hex[:12]}"
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        return self._connected.is_set()

    async def wait_healthy(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("backplane not started")
        return self._client

    async def start(self) -> None:
        if self._client is None:
            self._client = make_client(self._raw_url)
        try:
            await asyncio.wait_for(self._client.ping(), self.confirm_timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if self._owns_client:
                await self._client.aclose()
                self._client = None
            raise BackplaneUnavailable(_explain(self.url, exc, self.confirm_timeout)) from exc
        self._sub_client = listener_client(self._client)
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name=f"wskit-backplane-{self._keepalive[-12:]}"
        )
        try:
            await asyncio.wait_for(self._connected.wait(), self.confirm_timeout)
        except asyncio.TimeoutError as exc:
            # PING answered but SUBSCRIBE never confirmed (a proxy that drops
            # pub/sub, a server stuck in a script): unusable, and nothing of the
            # attempt may outlive this call.
            await self.stop()
            raise BackplaneUnavailable(
                f"Redis at {self.url} answered PING but did not confirm SUBSCRIBE within "
                f"{self.confirm_timeout:g}s") from exc

    async def stop(self) -> None:
        for task in (self._listener, self._catch_up):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._listener = self._catch_up = None
        self._live = False
        self._connected.clear()
        for fut in self._confirm.values():
            fut.cancel()
        self._confirm.clear()
        if self._sub_client is not None:
            await self._sub_client.aclose()
            self._sub_client = None
        if self._client is not None and self._owns_client:
            await self._client.aclose()  # redis-py 5+: aclose(), not close()
            self._client = None

    async def publish(self, channel: str, data: str) -> int:
        try:
            return await self.client.publish(channel, data)
        except (RedisError, OSError) as exc:
            raise BackplaneUnavailable(f"publish to Redis at {self.url} failed: {exc}") from exc

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention) -> tuple[int, str]:
        result = (await self._send_run([RoomPost(channel, origin, frame_text, key,
                                                 retention)]))[0]
        if isinstance(result, BackplaneUnavailable):
            raise result
        assert result is not None
        return result

    async def _send_run(self, run: Sequence[RoomPost]) -> list[Sent]:
        """One run (see :func:`runs`) in one command, not pipelined."""
        first = run[0]
        try:
            if first.key is None:
                await self.publish(first.channel,
                                   encode_envelope(first.origin, first.frame_text))
                return [None]
            reply = await self._script("append")(
                keys=[f"{first.key}:meta", f"{first.key}:stream"], args=append_args(run))
        except BackplaneUnavailable as exc:
            return [exc]
        except self._failures as exc:
            return [BackplaneUnavailable(f"append to Redis at {self.url} failed: {exc}")
                    ] * len(run)
        return sent_of(run, reply, f"Redis at {self.url}")

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
            return await self._script(f"presence_{op}")(
                keys=[f"{key}:presence", f"{key}:presence:idx"], args=args)
        except self._failures as exc:
            raise BackplaneUnavailable(
                f"presence {op} on Redis at {self.url} failed: {exc}") from exc

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        """The batch in one pipeline: one round trip however many posts, one command
        per run of posts to a room (:func:`runs`).

        The pipeline starts with SCRIPT LOAD (cheap when the script is cached): an
        EVALSHA can then never meet NOSCRIPT halfway through a batch after Redis
        restarted, which would leave earlier posts unstored and later ones stored.
        """
        batch = runs(posts)
        if len(batch) == 1:
            return await self._send_run(batch[0])
        pipe = self.client.pipeline(transaction=False)
        if any(run[0].key is not None for run in batch):
            pipe.script_load(self._source("append"))
            sha = self._script("append").sha
        for run in batch:
            first = run[0]
            if first.key is None:
                pipe.publish(first.channel, encode_envelope(first.origin, first.frame_text))
            else:
                pipe.evalsha(sha, 2, f"{first.key}:meta", f"{first.key}:stream",
                             *append_args(run))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            error = BackplaneUnavailable(f"send to Redis at {self.url} failed: {exc}")
            return [error] * len(posts)
        results: list[Sent] = []
        for run, reply in zip(batch, replies[len(replies) - len(batch):]):
            results += sent_of(run, reply, f"Redis at {self.url}")
        return results

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        mode, n = ("after", after) if after is not None else (
            ("last", last) if last is not None else ("none", 0))
        args = [new_epoch(), max(1, int(retention.ttl)), mode, n]
        try:
            top, epoch, oldest, raw = await self._script("read")(
                keys=[f"{key}:meta", f"{key}:stream"], args=args)
        except self._failures as exc:
            raise BackplaneUnavailable(f"history read from Redis at {self.url} failed: "
                                       f"{exc}") from exc
        entries = [Entry(int(entry_id.split("-", 1)[0]), fields[1])
                   for entry_id, fields in raw]
        if mode == "last":
            entries.reverse()  # XREVRANGE: newest first
        return Page(str(epoch), int(top), entries, int(oldest))

    def _script(self, name: str) -> Any:
        """The registered script (EVALSHA, falling back to EVAL after a Redis restart)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(self._source(name))
        return script

    def _source(self, name: str) -> str:
        return _SCRIPTS[name].replace("redis.call('PUBLISH'",
                                      f"redis.call('{self._publish_command}'")

    async def _apply(self, wanted: set[str]) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._live:
            return  # the listener subscribes to everything wanted when it reconnects
        wanted = wanted | {self._keepalive}
        add, remove = wanted - self._subscribed, self._subscribed - wanted
        loop = asyncio.get_running_loop()
        waits = [self._confirm.setdefault(ch, loop.create_future()) for ch in add]
        try:
            if add:
                await pubsub.subscribe(*add)
            if remove:
                await pubsub.unsubscribe(*remove)
        except (RedisError, OSError) as exc:
            log.debug("subscription change deferred until reconnect: %r", exc)
            return
        if self._pubsub is not pubsub:
            return  # the connection dropped meanwhile; the listener resubscribes all
        self._subscribed = wanted
        if waits:
            # Confirmed means Redis has processed SUBSCRIBE: every publish after
            # this point reaches us. Without it a join could miss the next post.
            done, _ = await asyncio.wait(waits, timeout=self.confirm_timeout)
            if len(done) < len(waits):
                log.warning("Redis did not confirm %d subscription(s) in %gs",
                            len(waits) - len(done), self.confirm_timeout)

    async def _listen(self) -> None:
        """Read messages forever; on any connection failure reconnect with backoff."""
        backoff = 0.05
        down_since: float | None = None
        while True:
            assert self._sub_client is not None
            pubsub = self._sub_client.pubsub()
            try:
                channels = await self._resubscribe(pubsub)
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None:
                        continue
                    kind = msg["type"]
                    if kind == "message":
                        self._dispatch(msg["channel"], msg["data"])
                    elif kind == "subscribe":
                        channel = msg["channel"]
                        fut = self._confirm.pop(channel, None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)
                        if channel == self._keepalive and not self._live:
                            self._live = True
                            # A subscribe() that came after _resubscribe copied the
                            # wanted set found us not yet live and deferred to us:
                            # apply whatever is wanted now, then report healthy. A
                            # task, since sync() waits for confirmations that only
                            # this loop reads.
                            self._catch_up = asyncio.get_running_loop().create_task(
                                self._caught_up(pubsub), name="wskit-backplane-catch-up")
                            backoff = 0.05
                            if down_since is not None:
                                self.reconnects += 1
                                log.warning("backplane %s: reconnected after %.1fs, resubscribed "
                                            "to %d channel(s)", self.url,
                                            time.monotonic() - down_since, len(channels) - 1)
                                down_since = None
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("backplane %s: connection lost (%s); reconnecting, messages "
                                "stay on this instance meanwhile", self.url, exc or type(exc).__name__)
            finally:
                self._live = False
                self._connected.clear()
                self._pubsub = None
                self._subscribed = set()
                await _close_quietly(pubsub)
            await asyncio.sleep(backoff)  # backoff between attempts, not synchronisation
            backoff = min(backoff * 2, self._max_backoff)

    async def _caught_up(self, pubsub: Any) -> None:
        await self.sync()
        if self._pubsub is pubsub and self._live:
            self._connected.set()

    async def _resubscribe(self, pubsub: Any) -> set[str]:
        """Subscribe a fresh connection to every channel wanted right now."""
        channels = set(self._wanted) | {self._keepalive}
        await pubsub.subscribe(*channels)
        self._pubsub, self._subscribed = pubsub, channels
        return channels


def _explain(url: str, exc: BaseException, timeout: float) -> str:
    """A start failure in words a user can act on."""
    text = str(exc) or type(exc).__name__
    auth_failed = isinstance(exc, AuthenticationError) or "NOAUTH" in text
    if auth_failed and urlsplit(url).password is None:
        return (f"Redis at {url} requires a password: put it in the URL, "
                f"redis://:PASSWORD@host:port/0 ({text})")
    if auth_failed:
        return f"Redis at {url} refused the credentials in the URL: {text}"
    if isinstance(exc, asyncio.TimeoutError):
        return f"cannot reach Redis at {url}: no answer within {timeout:g}s"
    return f"cannot reach Redis at {url}: {text}"


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        pass
