"""The example app (examples/): typing indicator, read receipts and a backend job,
across two instances, one per framework, with real clients and the real HTTP API."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import signal
import sys
import urllib.error
from pathlib import Path
from types import ModuleType

import pytest

import wskit
from wskit.exceptions import ServerError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


app, backend = load("typing_receipts"), load("backend_job")


@pytest.fixture
async def pair(start, framework, backplane_url):
    """Two instances of the app on one backplane: ``framework`` and the other one."""
    key = secrets.token_urlsafe(24)
    other = "fastapi" if framework == "aiohttp" else "aiohttp"
    handles = []
    for fw in (framework, other):
        server = wskit.ChatServer(backplane=backplane_url, api_key=key,
                                  namespace=f"ex{secrets.token_hex(4)}" if not handles
                                  else handles[0].server.settings.namespace)
        app.install(server)
        handles.append(await start(fw, server=server))
    return key, handles


async def test_typing_and_read_receipts_cross_instances(pair, clients) -> None:
    _, (a, b) = pair
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    await alice.request({"type": "app.typing", "roomId": "lobby"})
    assert await bob.expect("app.typing") == {"type": "app.typing", "roomId": "lobby",
                                              "userId": "alice", "active": True}
    sent = await alice.send("lobby", "hello")
    assert (await bob.expect("message"))["offset"] == sent["offset"]
    await bob.request({"type": "app.read", "roomId": "lobby", "offset": sent["offset"]})
    assert await alice.expect("app.read") == {"type": "app.read", "roomId": "lobby",
                                              "userId": "bob", "offset": sent["offset"]}
    with pytest.raises(ServerError) as err:  # a receipt for a post not made yet
        await bob.request({"type": "app.read", "roomId": "lobby", "offset": 10_000})
    assert err.value.code == "app.not_yet"
    with pytest.raises(ServerError) as err:  # refused by the schema; the connection lives on
        await bob.request({"type": "app.read", "roomId": "lobby", "offset": -1})
    assert err.value.code == "invalid_value"
    # alice closes her tab while typing: bob, on the other instance, sees her stop
    await alice.request({"type": "app.typing", "roomId": "lobby"})
    assert (await bob.expect("app.typing"))["active"] is True
    await alice.close()
    assert await bob.expect("app.typing") == {"type": "app.typing", "roomId": "lobby",
                                              "userId": "alice", "active": False}


async def test_the_backend_job_posts_to_every_instance(pair, clients) -> None:
    key, (a, b) = pair
    alice, bob = await clients(a, user="alice"), await clients(b, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    base = a.http_url
    offset = await asyncio.to_thread(backend.publish, base, key, "lobby", "build 42 is green")
    for c in (alice, bob):
        message = await c.expect("message")
        assert (message["userId"], message["content"], message["offset"]) == (
            "ci", "build 42 is green", offset)
    with pytest.raises(urllib.error.HTTPError) as err:  # without the key: 401
        await asyncio.to_thread(backend.publish, base, "not-the-key-at-all", "lobby", "x")
    assert err.value.code == 401
    err.value.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fw", ["aiohttp", "fastapi"])
async def test_the_example_runs_as_a_program(fw: str, clients) -> None:
    """``python examples/typing_receipts.py``, as its docstring says to run it."""
    secret = secrets.token_hex(32)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "typing_receipts.py"), "--framework", fw,
        "--port", "0", "--backplane", "memory://", stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "WSKIT_SECRET": secret})
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = line.split("(WebSocket ")[1].rstrip(")\n")
        alice = await clients(url, token=wskit.issue_token("alice", secret))
        bob = await clients(url, token=wskit.issue_token("bob", secret))
        for c in (alice, bob):
            await c.join("lobby")
        await alice.request({"type": "app.typing", "roomId": "lobby", "active": True})
        assert (await bob.expect("app.typing"))["userId"] == "alice"
    finally:
        proc.send_signal(signal.SIGINT)  # with clients still connected: a graceful stop
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0
