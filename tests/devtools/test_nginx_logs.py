"""The documented nginx config keeps tokens out of its error log too, and wskit's
same-origin default holds behind it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid

import aiohttp
import pytest

from wskit.devtools.deploy import LocalNginx, find_nginx

pytestmark = pytest.mark.skipif(find_nginx() is None,
                                reason="nginx is not installed (apt-get install nginx-light)")


def _dead_address() -> str:
    """An address nothing listens on (bound, then closed): nginx's connect() fails there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.timeout(60)
async def test_a_failing_upstream_logs_no_token(start, clients) -> None:
    backplane = f"fakeredis://deploy-{uuid.uuid4().hex[:8]}"
    a = await start("aiohttp", backplane=backplane)  # no --origin: same-origin only
    b = await start("fastapi", backplane=backplane)
    # a dead instance first in the upstream: nginx logs "connect() failed ... request:
    # "GET /ws?token=..."" at level error, then tries the next one
    nginx = LocalNginx([_dead_address(), a.base_url, b.base_url])
    await asyncio.to_thread(nginx.start)
    try:
        context = ssl.create_default_context()
        nginx.ca.configure_trust(context)
        url = f"{nginx.url}/ws"
        own = f"https://127.0.0.1:{nginx.port}"  # the page nginx serves, as a browser sends it
        for n in range(3):  # round robin: the dead upstream is tried at least once
            c = await clients(url, user=f"user{n}", ssl=context, headers={"Origin": own})
            assert c.welcome["userId"] == f"user{n}"
            await c.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await clients(url, user="mallory", ssl=context,
                          headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        errors = await asyncio.to_thread(nginx.error_log)
        access = await asyncio.to_thread(nginx.access_log)
        assert access.count("GET /ws") >= 3, access
        assert "token=" not in errors and "token=" not in access
    finally:
        await asyncio.to_thread(nginx.stop)
