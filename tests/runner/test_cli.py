"""``python -m wskit``: the commands as a user runs them, in real processes."""

from __future__ import annotations

import asyncio

import pytest
from processes import first_line, interrupt, spawn, stderr_of

import wskit
from wskit.cli import main

SECRET = "cli-secret-0123456789abcdef0123456789"


def test_token_prints_a_valid_token_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "alice", "--secret", SECRET, "--ttl", "60"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert wskit.verify_token(last, SECRET) == "alice"


@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_serve_prints_its_url_and_serves_until_interrupted(framework: str) -> None:
    proc = await spawn("serve", "--framework", framework, "--port", "0", "--secret", SECRET,
                        "--redis", "none")
    try:
        url = await first_line(proc)
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/ws")
        token = wskit.issue_token("alice", SECRET)
        async with wskit.connect(url, token=token) as alice:
            assert alice.welcome["instance"].startswith(framework)
            await alice.join("lobby")
    finally:
        code = await interrupt(proc)
    assert code == 0


@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
async def test_serve_on_uvloop(framework: str) -> None:
    """--loop uvloop (the fast extra): the server says which loop serves it, and chats."""
    import aiohttp

    pytest.importorskip("uvloop")
    proc = await spawn("serve", "--framework", framework, "--port", "0", "--secret", SECRET,
                       "--loop", "uvloop")
    try:
        url = await first_line(proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(url.replace("ws://", "http://").replace("/ws", "/healthz")) as r:
                assert (await r.json())["loop"] == "uvloop"
        token = wskit.issue_token("alice", SECRET)
        async with wskit.connect(url, token=token) as alice, \
                wskit.connect(url, token=wskit.issue_token("bob", SECRET)) as bob:
            await alice.join("lobby")
            await bob.join("lobby")
            await alice.send("lobby", "on uvloop")
            assert (await bob.receive())["content"] == "on uvloop"
    finally:
        code = await interrupt(proc)
    assert code == 0, stderr_of(proc)


def test_an_unknown_or_missing_loop_is_a_clear_error() -> None:
    with pytest.raises(wskit.ConfigError, match="unknown event loop"):
        wskit.run(asyncio.sleep(0), loop="trio")


async def test_serve_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = await spawn("serve", "--port", str(busy.getsockname()[1]), "--redis", "none")
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "wskit: error: cannot listen on" in stderr_of(proc)
    assert await interrupt(proc) == 1  # already exited: this only closes its stderr file


@pytest.mark.slow
async def test_demo_serves_two_instances_that_chat() -> None:
    import aiohttp

    proc = await spawn("demo", "--port", "0", "--dev-tokens", "--secret", SECRET)
    try:
        lines = [await first_line(proc), await first_line(proc)]
        urls = {line.split()[0]: line.split()[1] for line in lines}
        assert set(urls) == {"aiohttp", "fastapi"}
        async with aiohttp.ClientSession() as session:
            for url in urls.values():
                async with session.get(url) as page:
                    assert page.status == 200 and "wskit chat" in await page.text()
                async with session.get(url + "healthz") as health:
                    body = await health.json()
                    assert body["backplane"]["healthy"] is True
        ws = {fw: url.replace("http://", "ws://") + "ws" for fw, url in urls.items()}
        async with wskit.connect(ws["aiohttp"], user="alice", secret=SECRET) as alice, \
                wskit.connect(ws["fastapi"], user="bob", secret=SECRET) as bob:
            await alice.join("lobby")
            await bob.join("lobby")
            await alice.send("lobby", "across the demo's instances")
            assert (await bob.receive(timeout=10))["content"] == "across the demo's instances"
    finally:
        code = await interrupt(proc)
    assert code == 0


async def test_serve_ping_flags_close_a_zombie() -> None:
    proc = await spawn("serve", "--port", "0", "--secret", SECRET, "--redis", "none",
                       "--ping-interval", "0.2", "--ping-timeout", "0.2")
    try:
        url = await first_line(proc)
        zombie = wskit.Client(url, token=wskit.issue_token("z", SECRET), answer_pings=False)
        await zombie.connect()
        assert zombie.welcome["heartbeat"] == {"interval": 0.2, "timeout": 0.2}
        assert await zombie.wait_closed(timeout=10) == wskit.CloseCode.HEARTBEAT_TIMEOUT
        await zombie.close()
    finally:
        assert await interrupt(proc) == 0
