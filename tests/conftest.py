"""Shared fixtures: real servers on 127.0.0.1 port 0, real clients, leak checks."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import wskit

SECRET = "test-secret-0123456789abcdef0123456789"
REDIS_URL = os.environ.get("WSKIT_REDIS_URL")
FRAMEWORKS = ("aiohttp", "fastapi")


@pytest.fixture(autouse=True)
def _test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests choose their backplane explicitly; none inherits CI's URL by accident.
    monkeypatch.delenv("WSKIT_REDIS_URL", raising=False)
    monkeypatch.setenv("WSKIT_SECRET", SECRET)
    # the client-fault log limit is process-wide: each test starts a fresh window
    wskit.server.logs.client_faults.reset()


@pytest.fixture(autouse=True)
async def _no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks pending or makes the loop report an error."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    if left:
        # a task that is finishing its last step gets one bounded chance
        _, still = await asyncio.wait(left, timeout=2.0)
        left = [t for t in still if not t.done()]
    loop.set_exception_handler(previous)
    assert not left, f"tasks left pending: {left}"
    assert not errors, f"event loop reported errors: {[e.get('message') for e in errors]}"


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return request.param


def backplane_params() -> list[Any]:
    params: list[Any] = ["fakeredis"]
    params.append(pytest.param("redis", marks=pytest.mark.skipif(
        not REDIS_URL, reason="set WSKIT_REDIS_URL to test on a real Redis (.ci/run does)")))
    return params


@pytest.fixture(params=backplane_params())
def backplane_url(request: pytest.FixtureRequest) -> str:
    """A backplane URL private to this test: a fresh fake server, or the real Redis."""
    if request.param == "redis":
        assert REDIS_URL
        return REDIS_URL
    return f"fakeredis://test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[wskit.ChatServer]]]:
    """``await make_server(**settings)``: a started ChatServer for socket-free tests
    (wskit.testing.memory), standalone and without heartbeats unless asked; stopped afterwards."""
    servers: list[wskit.ChatServer] = []

    async def _make(**kwargs: Any) -> wskit.ChatServer:
        kwargs.setdefault("backplane", "none")
        kwargs.setdefault("ping_interval", None)
        kwargs.setdefault("ping_timeout", None)
        server = wskit.ChatServer(**kwargs)
        await server.start()
        servers.append(server)
        return server

    yield _make
    for server in servers:
        await server.stop()


Starter = Callable[..., Awaitable[wskit.RunningServer]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    """``await start("aiohttp", **settings)``: a server on 127.0.0.1:0, stopped afterwards.

    Standalone (``backplane="none"``) unless the test passes a backplane; every
    server of one test shares a private namespace, so tests sharing the real
    Redis never hear each other.
    """
    handles: list[wskit.RunningServer] = []
    namespace = f"t{uuid.uuid4().hex[:10]}"

    async def _start(framework: str = "aiohttp", **kwargs: Any) -> wskit.RunningServer:
        kwargs.setdefault("backplane", "none")
        kwargs.setdefault("namespace", namespace)
        kwargs.setdefault("name", f"test-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("port", 0)
        handle = await wskit.serve(framework, **kwargs)
        handles.append(handle)
        return handle

    yield _start
    for handle in reversed(handles):
        await handle.stop()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[wskit.Client]]]:
    """``await clients(server, user="alice")``: connected clients, closed afterwards."""
    opened: list[wskit.Client] = []

    async def _connect(target: Any, **kwargs: Any) -> wskit.Client:
        client = wskit.Client(target, **kwargs)
        opened.append(client)
        return await client.connect()

    yield _connect
    for client in opened:
        await client.close()


@pytest.fixture
async def own_redis() -> AsyncIterator[Any]:
    """A redis-server of the test's own (tests/ownredis.py), stopped afterwards."""
    from ownredis import OwnRedis

    server = OwnRedis()
    await server.start()
    yield server
    server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (tests/browsers.py) for the test, closed afterwards."""
    from browsers import ARGS, CHROMIUM

    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
