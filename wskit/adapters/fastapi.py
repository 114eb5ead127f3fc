"""wskit on FastAPI (Starlette under uvicorn): ``create_app(server)``.

Starlette's ``receive_text()``/``receive_json()`` raise on a binary frame, so the
transport reads raw ASGI messages and branches on what arrived.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Optional

from fastapi import FastAPI, Query, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.websockets import WebSocketState

from ..protocol import close_reason
from ..server import ChatServer
from . import WS_PATH, chat_page, dev_token, health

__all__ = ["create_app", "StarletteTransport"]


class StarletteTransport:
    """:class:`wskit.connection.Transport` over a Starlette ``WebSocket``."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            # also where an oversized frame ends: uvicorn has sent close 1009
            return None
        text = message.get("text")
        if text is not None:
            return text
        return message.get("bytes") or b""

    async def send_text(self, text: str) -> None:
        # WebSocket.send with the message send_text would build: one coroutine
        # fewer per delivery (a broadcast makes N of them)
        await self.ws.send({"type": "websocket.send", "text": text})

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

    app = FastAPI(title="wskit", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.wskit = server

    @app.websocket(WS_PATH)
    async def ws_endpoint(websocket: WebSocket, token: Optional[str] = Query(None)) -> None:
        if not server.origin_allowed(websocket.headers.get("origin")):
            # close before accept: uvicorn answers the handshake with HTTP 403
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await server.serve_connection(StarletteTransport(websocket), token)

    @app.get("/healthz")
    async def _health() -> JSONResponse:
        return JSONResponse(health(server))

    @app.get("/token")
    async def _token(user: Optional[str] = None) -> JSONResponse:
        status, body = dev_token(server, user)
        return JSONResponse(body, status_code=status)

    if server.settings.page:
        @app.get("/", response_class=HTMLResponse)
        async def _page() -> HTMLResponse:
            return HTMLResponse(chat_page())

    return app
