"""wskit on aiohttp: ``create_app(server)`` returns a ready ``web.Application``."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from ..core.protocol import close_reason
from ..security.redact import install_token_filter
from ..server.chat import ChatServer
from . import BAD_HOST, WS_PATH, chat_page, dev_token, health, inspect_page, page_headers
from . import api as http_api

__all__ = ["create_app", "AiohttpTransport", "SERVER_KEY"]

SERVER_KEY: web.AppKey[ChatServer] = web.AppKey("wskit_server", ChatServer)

#: above this many buffered bytes, frames go through the outbox and aiohttp's drain
_WRITE_LIMIT = 64 * 1024

_END = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class AiohttpTransport:
    """:class:`wskit.server.connection.Transport` over ``aiohttp.web.WebSocketResponse``."""

    __slots__ = ("ws", "_tcp")

    def __init__(self, ws: web.WebSocketResponse, tcp: asyncio.Transport | None) -> None:
        self.ws = ws
        self._tcp = tcp

    async def receive(self) -> str | bytes | None:
        while True:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                return msg.data
            if msg.type in _END:
                # An oversized frame arrives here as ERROR after aiohttp has already
                # sent close 1009 (max_msg_size); nothing more to do but stop.
                return None
            # PING/PONG are answered by aiohttp itself (autoping)

    async def send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    def try_write(self, wire: bytes) -> bool:
        """Write a ready-made frame if the socket's buffer has room and the connection
        is not compressed (a compressed one needs its own deflate of every frame)."""
        tcp = self._tcp
        if tcp is None or self.ws.closed or tcp.is_closing() or self.ws.compress:
            return False
        if tcp.get_write_buffer_size() > _WRITE_LIMIT:
            return False  # back-pressure: the writer task will wait for the drain
        tcp.write(wire)
        return True

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=close_reason(reason).encode())

    def abort(self) -> None:
        if self._tcp is not None:
            self._tcp.abort()


async def _ws_handler(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    if not server.origin_allowed(request.headers.get("Origin"), request.headers.get("Host")):
        # Refused before the upgrade: a hijacking page learns nothing.
        raise web.HTTPForbidden(text="origin not allowed\n")
    s = server.settings
    ws = web.WebSocketResponse(
        max_msg_size=s.max_message_size,
        heartbeat=s.protocol_ping_interval,
        timeout=s.close_timeout,
        # permessage-deflate only when asked for (Settings.compression): chat frames are
        # small, and without it a broadcast is encoded once for all receivers
        # (Outgoing.wire) instead of compressed per receiver
        compress=s.compression,
    )
    await ws.prepare(request)
    await server.serve_connection(AiohttpTransport(ws, request.transport),
                                  request.query.get("token"), remote=request.remote)
    return ws


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=chat_page(), content_type="text/html", headers=page_headers())


async def _inspect_page(request: web.Request) -> web.Response:
    return web.Response(text=inspect_page(), content_type="text/html",
                        headers=page_headers("inspect.html"))


async def _token(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    status, body = (dev_token(server, request.query.get("user"))
                    if server.host_allowed(request.headers.get("Host")) else BAD_HOST)
    return web.json_response(body, status=status)


async def _health(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if not server.host_allowed(request.headers.get("Host")):
        status, body = BAD_HOST
        return web.json_response(body, status=status)
    return web.json_response(health(server))


def _answer(answer: http_api.Answer) -> web.Response:
    # content_type and charset apart: aiohttp refuses a charset inside content_type
    ctype, _, params = answer.content_type.partition(";")
    charset = params.partition("charset=")[2].strip() or None
    return web.Response(body=answer.body, status=answer.status, content_type=ctype.strip(),
                        charset=charset, headers=dict(answer.headers))


async def _ready(request: web.Request) -> web.Response:
    return _answer(http_api.readiness(request.app[SERVER_KEY]))


async def _metrics(request: web.Request) -> web.Response:
    return _answer(http_api.metrics(request.app[SERVER_KEY]))


async def _api(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    # read at most one byte past the limit: an oversized body is refused, not buffered
    # (read(n) returns what has arrived, up to n: loop until the end or the limit)
    limit = server.settings.max_message_size + 8192
    body = b""
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return _answer(await http_api.handle_api(
        server, request.method, request.path, request.headers.get("Authorization"),
        request.query, body))


def create_app(server: ChatServer, *, manage: bool = True) -> web.Application:
    """An aiohttp application serving ``server`` at ``/ws``.

    With ``manage`` the app starts the server (backplane) on startup and stops
    it on shutdown; the runner passes False because it does that itself, before
    binding, so a bad Redis URL fails in the caller's cell.
    """
    install_token_filter()  # aiohttp.access would log /ws?token=... (web.run_app)
    app = web.Application()
    app[SERVER_KEY] = server
    app.router.add_get(WS_PATH, _ws_handler)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/readyz", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", http_api.API_PREFIX + "{route:.*}", _api)
    app.router.add_get("/token", _token)
    if server.settings.page:
        app.router.add_get("/", _page)
    if server.settings.api_key is not None:
        app.router.add_get("/inspect", _inspect_page)
    if manage:
        async def _start(app: web.Application) -> None:
            await server.start()

        async def _stop(app: web.Application) -> None:
            await server.stop()

        app.on_startup.append(_start)
        app.on_shutdown.append(_stop)
    return app
