"""The benchmarks' browser-like client mode (``--deflate``) runs and reports.

The load generator's own WebSocket client (wskit.bench.fanout.WSClient) must offer
permessage-deflate and inflate what a compressing server sends, or a ``--deflate``
run would count garbage; ``bench held`` reports both client modes.
"""

from __future__ import annotations

import asyncio

import pytest

from wskit.bench import fanout, held
from wskit.bench.targets import SECRET


@pytest.mark.parametrize("framework", ["aiohttp", "fastapi"])
@pytest.mark.parametrize("compression", [False, True])
async def test_the_bench_client_reads_what_a_compressing_server_sends(
        start, monkeypatch: pytest.MonkeyPatch, framework: str, compression: bool) -> None:
    monkeypatch.setattr(fanout, "DEFLATE", True)
    server = await start(framework, compression=compression, secret=SECRET,
                         ping_interval=None, ping_timeout=None)
    got: asyncio.Queue[bytes] = asyncio.Queue()
    reader = await fanout.ws_connect(server.host, server.port, fanout.WSKIT.path("r", ""), got.put_nowait)
    sender = await fanout.ws_connect(server.host, server.port, fanout.WSKIT.path("s", ""))
    try:
        assert (reader.inflater is not None) is compression  # the server's policy decided
        async def next_of(kind: bytes) -> bytes:
            while kind not in (payload := await asyncio.wait_for(got.get(), 10)):
                pass
            return payload

        join = fanout.WSKIT.join
        assert join is not None
        reader.send_text(join("lobby"))
        await next_of(b'"type":"joined"')  # the reader is in the room before the post
        sender.send_text(join("lobby"))
        text = "M! " + "compressible " * 100
        sender.send_text(fanout.WSKIT.post("lobby", text))
        assert text.encode() in await next_of(b'"type":"message"')
    finally:
        reader.close()
        sender.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_held_reports_both_client_modes() -> None:
    rows = await held.run(n=5, interval=None, timeout=None, hold=0.2, servers=("fastapi",))
    assert [(r.server, r.offers_deflate) for r in rows] == [("fastapi", False), ("fastapi", True)]
    assert all(r.closed == 0 and r.post_reached == 5 for r in rows)
