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
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisError

from ..core.history import Page, Retention
from ..core.reconnect import Backoff
from ..exceptions import BackplaneUnavailable, ConfigError
from .base import Broker, PresenceStore, RoomPost, Sent
from .scripts import MAX_RUN, append_args, runs, sent_of
from .store import RedisStore

log = logging.getLogger("wskit.backplane")

__all__ = ["RedisBackplane", "shared_fake_server", "redact", "make_client",
           # where they were before the store moved out (wskit.backplane.scripts)
           "MAX_RUN", "runs", "append_args", "sent_of"]

_fake_lock = threading.Lock()
_fake_servers: dict[str, Any] = {}
_fake_lifetimes: dict[str, str] = {}

#: how long ``subscribe`` waits for Redis to confirm before carrying on
CONFIRM_TIMEOUT = 5.0

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
            _fake_lifetimes[name] = uuid.uuid4().hex
        return server


def fake_lifetime(name: str = "") -> str:
    """A token naming the lifetime of ``fakeredis://NAME``'s server (fakeredis has no
    INFO run_id; the history scripts derive unborn epochs from it)."""
    shared_fake_server(name)
    with _fake_lock:
        return _fake_lifetimes[name]


def redact(url: str) -> str:
    """A URL fit for logs and error messages: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


#: connections one backplane keeps to Redis (commands beyond wait for one)
POOL_SIZE = 100


def make_client(url: str) -> aioredis.Redis:
    """A redis.asyncio client for ``url`` with timeouts suited to a backplane."""
    scheme = urlsplit(url).scheme
    # One quick retry heals a pooled connection that went stale when Redis
    # restarted; more would only delay the sender's error frame during an outage.
    options: dict[str, Any] = dict(
        decode_responses=True,
        retry=Retry(EqualJitterBackoff(cap=0.2, base=0.05), 1),
        socket_connect_timeout=3.0,
        socket_timeout=5.0,
    )
    # A blocking pool: redis-py's default pool raises "Too many connections" past
    # its 100, so a herd of 200 rejoins (200 history reads at once) got 101
    # "history_unavailable" joins; a blocking one makes the 101st read wait for a
    # connection instead, at most as long as a command may take.
    if scheme == "fakeredis":
        import fakeredis

        name = urlsplit(url).netloc
        return fakeredis.FakeAsyncRedis(server=shared_fake_server(name), decode_responses=True,
                                        connection_pool_class=aioredis.BlockingConnectionPool,
                                        max_connections=POOL_SIZE)
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a Redis URL: {redact(url)!r}")
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=options["socket_timeout"], **options)
        return aioredis.Redis.from_pool(pool)
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


class RedisBackplane(Broker):
    """One Redis: its :class:`RedisStore` (history, presence) and one supervised
    pub/sub listener.

    Pass ``client=`` to inject an existing ``redis.asyncio.Redis`` (or a fakeredis
    one); it is then not closed by :meth:`stop`.
    """

    def __init__(self, url: str = "fakeredis://", *, client: aioredis.Redis | None = None,
                 max_backoff: float = 2.0, confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        super().__init__()
        self.confirm_timeout = confirm_timeout
        self.url = redact(url)
        self._raw_url = url
        self._client = client
        self._owns_client = client is None
        self._store: RedisStore | None = None
        self._max_backoff = max_backoff
        self._sub_client: aioredis.Redis | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._confirm: dict[str, asyncio.Future[None]] = {}
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

    @property
    def store(self) -> RedisStore:
        """History and presence on this Redis (from :meth:`start` on)."""
        if self._store is None:
            parts = urlsplit(self._raw_url)
            lifetime = fake_lifetime(parts.netloc) if (
                self._owns_client and parts.scheme == "fakeredis") else ""
            self._store = RedisStore(self.client, f"Redis at {self.url}", lifetime=lifetime)
        return self._store

    @property
    def presence(self) -> PresenceStore:
        return self.store

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
        await self.subscriptions.stop()
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
            self._store = None

    # -- the store's (history and batches) -------------------------------------

    async def publish(self, channel: str, data: str) -> int:
        return await self.store.publish(channel, data)

    async def append(self, key: str, channel: str, origin: str, frame_text: str,
                     retention: Retention, once: str | None = None,
                     sig: str = "") -> tuple[int, str]:
        return await self.store.append(key, channel, origin, frame_text, retention, once, sig)

    async def send(self, posts: Sequence[RoomPost]) -> list[Sent]:
        return await self.store.send(posts)

    async def read(self, key: str, retention: Retention, *, after: int | None = None,
                   last: int | None = None) -> Page:
        return await self.store.read(key, retention, after=after, last=last)

    # -- the listener ----------------------------------------------------------

    async def _apply(self, add: set[str], remove: set[str]) -> bool:
        pubsub = self._pubsub
        if pubsub is None or not self._live:
            return False  # the listener subscribes to everything wanted when it reconnects
        loop = asyncio.get_running_loop()
        waits = [self._confirm.setdefault(ch, loop.create_future()) for ch in add]
        try:
            if add:
                await pubsub.subscribe(*add)
            if remove:
                await pubsub.unsubscribe(*remove)
        except (RedisError, OSError) as exc:
            log.debug("subscription change deferred until reconnect: %r", exc)
            return False
        if self._pubsub is not pubsub:
            return False  # the connection dropped meanwhile; the listener resubscribes all
        if waits:
            # Confirmed means Redis has processed SUBSCRIBE: every publish after
            # this point reaches us. Without it a join could miss the next post.
            done, _ = await asyncio.wait(waits, timeout=self.confirm_timeout)
            if len(done) < len(waits):
                log.warning("Redis did not confirm %d subscription(s) in %gs",
                            len(waits) - len(done), self.confirm_timeout)
        return True

    async def _listen(self) -> None:
        """Read messages forever; on any connection failure reconnect with backoff."""
        backoff = Backoff(0.05, self._max_backoff)
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
                            # task, since settle() waits for confirmations that only
                            # this loop reads.
                            self._catch_up = asyncio.get_running_loop().create_task(
                                self._caught_up(pubsub), name="wskit-backplane-catch-up")
                            backoff.reset()
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
                self.subscriptions.reset(set())  # the connection took them all
                await _close_quietly(pubsub)
            await asyncio.sleep(backoff.next())  # between attempts, not synchronisation

    async def _caught_up(self, pubsub: Any) -> None:
        await self.subscriptions.settle()
        if self._pubsub is pubsub and self._live:
            self._connected.set()
            self._resubscribed()  # the first time too: nothing is followed yet then

    async def _resubscribe(self, pubsub: Any) -> set[str]:
        """Subscribe a fresh connection to every channel wanted right now."""
        wanted = set(self.subscriptions.wanted)
        channels = wanted | {self._keepalive}
        await pubsub.subscribe(*channels)
        self._pubsub = pubsub
        self.subscriptions.reset(wanted)
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
