"""Cross-instance fan-out, chosen by URL.

=====================  ==================================================
URL                    backend
=====================  ==================================================
``memory://NAME``      in-process bus, no Redis (:mod:`.memory`)
``fakeredis://NAME``   fakeredis, one shared fake server per NAME in this
                       process (the default, so notebooks need no Redis)
``redis://...``        a real Redis (also ``rediss://`` and ``unix://``)
``redis-cluster://``   a Redis Cluster with sharded pub/sub: ``redis-cluster://
                       HOST:PORT[,HOST:PORT...]`` (also ``rediss-cluster://``;
                       :mod:`.cluster`)
``none``               no backplane: a standalone instance
=====================  ==================================================

With no URL given, ``WSKIT_REDIS_URL`` decides, and without it ``fakeredis://``.

Each is a :class:`Broker` (``Backplane``: pub/sub, atomic append, history read,
health) that offers a :class:`PresenceStore` as its ``presence``. On Redis both
are a :class:`RedisStore` (the scripts: :mod:`.scripts`) composed with a
listener: one supervised pub/sub connection (:mod:`.redis`) or one per shard
(:mod:`.cluster`).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigError
from .base import Backplane, Broker, PresenceStore, RoomPost, Sent, decode_envelope, encode_envelope
from .memory import MemoryBackplane, MemoryPresence
from .redis import RedisBackplane, redact, shared_fake_server
from .store import RedisStore

__all__ = ["Backplane", "Broker", "PresenceStore", "RoomPost", "Sent", "MemoryBackplane",
           "MemoryPresence", "RedisBackplane", "RedisStore", "from_url", "default_url",
           "encode_envelope", "decode_envelope", "shared_fake_server"]

ENV_VAR = "WSKIT_REDIS_URL"


def default_url() -> str:
    return os.environ.get(ENV_VAR) or "fakeredis://"


def from_url(url: str | None = None, *, client: Any = None) -> Backplane | None:
    """A backplane for ``url`` (see the table above); None for ``"none"``."""
    if client is not None:
        return RedisBackplane(url or "redis://injected", client=client)
    url = url or default_url()
    if url == "none":
        return None
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBackplane(urlsplit(url).netloc or "default")
    if scheme in ("redis", "rediss", "unix", "fakeredis"):
        return RedisBackplane(url)
    if scheme in ("redis-cluster", "rediss-cluster"):
        from .cluster import ClusterBackplane

        return ClusterBackplane(url)
    raise ConfigError(
        f"unknown backplane URL {redact(url)!r}: expected memory://, fakeredis://, "
        "redis://, rediss://, unix://, redis-cluster://, rediss-cluster:// or 'none'"
    )
