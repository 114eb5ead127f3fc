"""wskit on FastAPI (Starlette under uvicorn): ``create_app(server)``.

Starlette's ``receive_text()``/``receive_json()`` raise on a binary frame, so the
transport reads raw ASGI messages and branches on what arrived.

Data frames go straight to the ASGI ``send`` callable, not through Starlette's
``WebSocket.send``: a broadcast to N receivers makes N sends, and each one through
Starlette passes a state check and the exception middleware's ``sender`` wrapper,
two coroutines that do nothing for a ``websocket.send`` message. ``DirectSend``, a
plain ASGI middleware that ``create_app`` installs innermost of the app's
middleware, hands the endpoint the ``send`` it was given (so any middleware the
user adds still sees every frame). Accept and close still go through Starlette,
which tracks the socket's state.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketState

from ..core.protocol import close_reason
from ..security.redact import install_token_filter
from ..server.chat import ChatServer
from . import BAD_HOST, WS_PATH, chat_page, dev_token, health, inspect_page, page_headers
from . import api as http_api

__all__ = ["create_app", "DirectSend", "StarletteTransport"]

#: the scope key under which :class:`DirectSend` leaves a WebSocket's ASGI ``send``
SEND_KEY = "wskit.send"


class DirectSend:
    """ASGI middleware: records each WebSocket's ``send`` in its scope (see above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SEND_KEY] = send
        await self.app(scope, receive, send)


class StarletteTransport:
    """:class:`wskit.server.connection.Transport` over a Starlette ``WebSocket``."""

    __slots__ = ("ws", "_send")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        # without the middleware (the app built some other way): Starlette's send
        self._send: Send = ws.scope.get(SEND_KEY) or ws.send

    async def receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            # also where an oversized frame ends: uvicorn has sent close 1009
            return None
        text = message.get("text")
        if text is not None:
            return text
        return message.get("bytes") or b""

    def send_text(self, text: str) -> Awaitable[None]:
        # the ASGI send's own coroutine, not one of ours around it. uvicorn raises
        # ClientDisconnected (an OSError) once the peer is gone; Connection closes
        # with 1001 on any error from a send
        return self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str) -> None:
        if (self.ws.application_state is WebSocketState.CONNECTED
                and self.ws.client_state is WebSocketState.CONNECTED):
            await self.ws.close(code, close_reason(reason))

    def abort(self) -> None:
        # ASGI gives no handle on the TCP transport; uvicorn drops the connection
        # itself when its close handshake times out.
        pass


def create_app(server: ChatServer, *, manage: bool = True) -> FastAPI:
    """A FastAPI application serving ``server`` at ``/ws``.

    With ``manage`` the app's lifespan starts and stops the server; the runner
    passes False because it does that itself, before binding.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await server.start()
        try:
            yield
        finally:
            if manage:
                await server.stop()

    install_token_filter()  # uvicorn logs "WebSocket /ws?token=..." at INFO
    app = FastAPI(title="wskit", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.wskit = server
    app.add_middleware(DirectSend)  # first added: innermost of the app's middleware

    @app.websocket(WS_PATH)
    async def ws_endpoint(websocket: WebSocket, token: str | None = Query(None)) -> None:
        if not server.origin_allowed(websocket.headers.get("origin"),
                                     websocket.headers.get("host")):
            # close before accept: uvicorn answers the handshake with HTTP 403
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await server.serve_connection(StarletteTransport(websocket), token,
                                      remote=websocket.client.host if websocket.client else None)

    @app.get("/healthz")
    async def _health(request: Request) -> JSONResponse:
        if not server.host_allowed(request.headers.get("host")):
            status, body = BAD_HOST
            return JSONResponse(body, status_code=status)
        return JSONResponse(health(server))

    @app.get("/readyz")
    async def _ready() -> Response:
        return _answer(http_api.readiness(server))

    @app.get("/metrics")
    async def _metrics() -> Response:
        return _answer(http_api.metrics(server))

    @app.get(http_api.API_PREFIX + "docs", include_in_schema=False)
    async def _api_docs() -> Response:
        if server.settings.api_key is None:
            return _answer(http_api.error(404, "not_found", "the HTTP API is off"))
        return get_swagger_ui_html(openapi_url=http_api.API_PREFIX + "openapi.json",
                                   title="wskit HTTP API")

    @app.api_route(http_api.API_PREFIX + "{route:path}",
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def _api(request: Request, route: str) -> Response:
        limit = server.settings.max_message_size + 8192
        body = b""
        async for chunk in request.stream():  # at most one byte past the limit
            body += chunk
            if len(body) > limit:
                break
        return _answer(await http_api.handle_api(
            server, request.method, request.url.path, request.headers.get("authorization"),
            request.query_params, body))

    @app.get("/token")
    async def _token(request: Request, user: str | None = None) -> JSONResponse:
        status, body = (dev_token(server, user)
                        if server.host_allowed(request.headers.get("host")) else BAD_HOST)
        return JSONResponse(body, status_code=status)

    if server.settings.page:
        @app.get("/", response_class=HTMLResponse)
        async def _page() -> HTMLResponse:
            return HTMLResponse(chat_page(), headers=page_headers())

    if server.settings.api_key is not None:
        @app.get("/inspect", response_class=HTMLResponse, include_in_schema=False)
        async def _inspect_page() -> HTMLResponse:
            return HTMLResponse(inspect_page(), headers=page_headers("inspect.html"))

    return app


def _answer(answer: http_api.Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type,
                    headers=dict(answer.headers))
