"""The throwaway redis-server of fault and cluster tests: ports that cannot be stolen.

A cluster test once failed in CI with "redis-server on port 47439 did not start": the
port had been free when checked, inside the ephemeral range, and gone when the server
bound it. These pin down what replaced that.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import redis

from wskit.devtools import localredis, ports
from wskit.devtools.localredis import LocalRedis, free_port

pytestmark = [
    pytest.mark.skipif(localredis.shutil.which("redis-server") is None,
                       reason="redis-server not installed (apt-get install redis-server)"),
    pytest.mark.timeout(30),
]


def test_ports_are_below_the_ephemeral_range_with_their_offset() -> None:
    low = ports._ephemeral_low()
    for _ in range(50):
        port = free_port(also_free=10000)
        assert 1024 <= port and port + 10000 < low


def test_a_restart_keeps_the_port_and_starts_empty() -> None:
    with LocalRedis() as server:
        with redis.Redis(port=server.port) as client:
            client.set("k", "v")
        server.stop()
        server.start()
        with redis.Redis(port=server.port) as client:
            assert client.get("k") is None and client.ping()


def test_a_port_taken_meanwhile_is_replaced_by_another(monkeypatch: Any) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real = localredis.free_port
        offered = iter([taken])
        # the first port offered is one another process bound after the check
        monkeypatch.setattr(localredis, "free_port", lambda *a: next(offered, None) or real(*a))
        with LocalRedis() as server:
            assert server.port != taken
            with redis.Redis(port=server.port) as client:
                assert client.ping()


def test_a_fixed_port_in_use_is_a_clear_error_not_a_timeout() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = LocalRedis(port=squatter.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            server.start(timeout=5)
        server.close()
