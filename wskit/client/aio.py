"""A small wskit client for notebooks, scripts, tests and lessons.

Async::

    async with wskit.connect(server, user="alice") as alice:
        await alice.join("lobby")
        await alice.send("lobby", "hello")
        frame = await alice.receive(timeout=2)

Sync (scripts)::

    with wskit.SyncClient(server.url, user="bob", secret=...) as bob:
        bob.join("lobby")

A background reader answers the server's ``ping`` frames (unless told to play
a "zombie": ``answer_pings = False``), routes replies to the request that asked
(every request carries a ``ref``), and queues everything else for
:meth:`Client.receive`. :meth:`Client.pause_reading` stops reading the socket
altogether, so TCP back-pressure builds up as with a frozen browser tab.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import ssl as ssl_module
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from ..core import protocol
from ..core.reconnect import Backoff, should_reconnect
from ..exceptions import ConnectionClosed, ServerError
from ..security.tokens import issue_token

__all__ = ["Client", "connect", "SyncClient"]

log = logging.getLogger("wskit.client")

_PONG = protocol.encode(protocol.pong_request())
_IGNORED = (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG)
_CLOSED = object()

#: a callable giving a fresh token for each (re)connection, sync or async
TokenSource = Callable[[], str | Awaitable[str]]


async def _call(source: TokenSource) -> str:
    token = source()
    return await token if inspect.isawaitable(token) else token


def _resolve(target: Any, token: str | None, user: str | None, secret: str | None) -> str:
    """The ws:// URL with its token, from a URL or a server handle."""
    if hasattr(target, "url") and hasattr(target, "token") and not isinstance(target, str):
        url = target.url
        if token is None and user is not None:
            token = target.token(user)
    else:
        url = str(target)
        if token is None and user is not None:
            token = issue_token(user, secret)
    if token is None or "token=" in urlsplit(url).query:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"token": token})


def _decode(text: str) -> dict[str, Any] | None:
    """A server frame as a dict, or None if it is not a JSON object.

    A client must survive whatever a server (or a proxy, or a lesson's broken
    server) sends: one odd frame is skipped, not fatal to the reader.
    """
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


class Client:
    """One WebSocket connection to a wskit server."""

    def __init__(self, target: Any, *, user: str | None = None,
                 token: str | TokenSource | None = None,
                 secret: str | None = None, answer_pings: bool = True,
                 headers: dict[str, str] | None = None, timeout: float = 5.0,
                 max_msg_size: int = 4 * 1024 * 1024, protocol_pongs: bool = True,
                 welcome: bool = True, reconnect: bool = False,
                 backoff: Backoff | None = None,
                 max_attempts: int | None = None,
                 ssl: ssl_module.SSLContext | None = None) -> None:
        #: several targets (URLs or handles): reconnects cycle through them
        self._targets = list(target) if isinstance(target, (list, tuple)) else [target]
        self._target_index = 0
        self._user, self._secret = user, secret
        self._token_source = token if callable(token) else None
        self._token = None if callable(token) else token
        self.url = _resolve(self._targets[0], self._token, user, secret)
        #: reconnect after an unexpected close (see wskit.core.reconnect), rejoining rooms
        #: with ``since`` so that missed messages are delivered, in order, once
        self.reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        #: rooms joined: roomId -> {"offset": last offset seen, "epoch": its epoch}
        self.rooms: dict[str, dict[str, Any]] = {}
        #: successful reconnections so far
        self.reconnects = 0
        #: rooms whose rejoin said ``recovered: false`` (messages were lost), in order
        self.lost: list[str] = []
        self._app_closed = False
        self._rejoin: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.answer_pings = answer_pings
        self.timeout = timeout
        self.welcome: dict[str, Any] = {}
        #: app-level pings received so far (answered or not)
        self.pings = 0
        #: server frames that were not JSON objects (ignored, logged)
        self.bad_frames = 0
        self._ping_seen = asyncio.Event()
        self._protocol_pongs = protocol_pongs
        #: wait for wskit's welcome frame on connect (False for other servers, e.g. the seed's)
        self.expect_welcome = welcome
        self._headers = headers
        #: for wss:// with a private CA (a proxy's throwaway certificate); None: the system's
        self._ssl = ssl
        self._max_msg_size = max_msg_size
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._reading = asyncio.Event()
        self._reading.set()
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    # -- connecting ----------------------------------------------------------

    async def connect(self) -> Client:
        """Open the connection and wait for the server's ``welcome`` frame.

        Raises :class:`ConnectionClosed` if the server closes instead (4001 for a
        bad token) and ``aiohttp.WSServerHandshakeError`` if it refuses the
        upgrade (403 for a foreign Origin).
        """
        self._session = aiohttp.ClientSession()
        try:
            if self._token_source is not None:
                self.url = _resolve(self._targets[0], await _call(self._token_source),
                                    self._user, self._secret)
            self._ws = await self._open(self.url)
            self._reader = asyncio.get_running_loop().create_task(self._run())
            if not self.expect_welcome:
                return self
            first = await self.receive(timeout=self.timeout)
            if first.get("type") != "welcome":
                raise RuntimeError(f"expected a welcome frame, got {first!r}")
        except BaseException:
            await self._teardown()
            raise
        self.welcome = first
        return self

    async def _open(self, url: str) -> aiohttp.ClientWebSocketResponse[Any]:
        assert self._session is not None
        return await self._session.ws_connect(
            url, headers=self._headers, max_msg_size=self._max_msg_size,
            ssl=self._ssl if self._ssl is not None else True,
            autoping=self._protocol_pongs, timeout=aiohttp.ClientWSTimeout(ws_close=self.timeout))

    @property
    def user(self) -> str | None:
        return self.welcome.get("userId")

    @property
    def instance(self) -> str | None:
        return self.welcome.get("instance")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def __aenter__(self) -> Client:
        if self._ws is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------

    async def request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a frame with a fresh ``ref`` and return the server's reply to it.

        An ``error`` reply raises :class:`ServerError`.
        """
        ref = f"r{next(self._refs)}"
        since = frame.get("since")
        if frame.get("type") == "join" and isinstance(since, dict):
            # the replay after this position follows the reply: count from here
            self.rooms[frame.get("roomId")] = {"offset": since.get("offset"),  # type: ignore[index]
                                               "epoch": since.get("epoch")}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self.send_raw({**frame, "ref": ref})
            reply = await asyncio.wait_for(future, timeout or self.timeout)
        finally:
            self._pending.pop(ref, None)
        if reply.get("type") == "error":
            raise ServerError(reply.get("code", "?"), reply.get("message", ""), reply)
        return reply

    def join(self, room: str) -> Awaitable[dict[str, Any]]:
        return self.request(protocol.join_request(room))

    def leave(self, room: str) -> Awaitable[dict[str, Any]]:
        return self.request(protocol.leave_request(room))

    def send(self, room: str, content: str) -> Awaitable[dict[str, Any]]:
        """Post to a room; returns the ``sent`` acknowledgement (with the message id)."""
        return self.request(protocol.post_request(room, content))

    def direct(self, to: str, content: str) -> Awaitable[dict[str, Any]]:
        return self.request(protocol.direct_request(to, content))

    async def presence(self, room: str) -> list[str]:
        """Who is in ``room`` (joined) on any instance."""
        return list((await self.request(protocol.presence_request(room)))["users"])

    async def send_raw(self, data: str | bytes | dict[str, Any]) -> None:
        """Send anything, valid or not: a dict as JSON, a str as text, bytes as binary.

        :class:`ConnectionClosed` if the connection is closing or gone (with
        ``reconnect``, :meth:`wait_connected` and send again).
        """
        ws = self._require_ws()
        try:
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            elif isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_str(json.dumps(data))
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionClosed(ws.close_code, f"send failed: {exc}") from exc

    async def send_text_bytes(self, payload: bytes) -> None:
        """Send a *text* frame carrying any bytes, valid UTF-8 or not (bad-input lessons)."""
        await self._require_ws().send_frame(payload, aiohttp.WSMsgType.TEXT)

    # -- receiving -----------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame that is not a reply to a request (nor a ping).

        Raises ``TimeoutError`` after ``timeout`` seconds (default: the client's),
        :class:`ConnectionClosed` once the connection is closed and drained.
        """
        item = await asyncio.wait_for(self._inbox.get(), timeout or self.timeout)
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later receive sees it too
            raise ConnectionClosed(self.close_code, self.close_reason)
        return item

    async def expect(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Receive until a frame of type ``kind`` arrives; skip others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            frame = await self.receive(timeout=max(0.0, deadline - loop.time()) or 1e-3)
            if frame.get("type") == kind:
                return frame

    def drain(self) -> list[dict[str, Any]]:
        """Every frame already received and not yet taken, without waiting."""
        frames = []
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is _CLOSED:
                self._inbox.put_nowait(_CLOSED)
                break
            frames.append(item)
        return frames

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Frames until the connection closes (no timeout)."""
        while True:
            item = await self._inbox.get()
            if item is _CLOSED:
                self._inbox.put_nowait(_CLOSED)
                return
            yield item

    async def wait_pings(self, count: int, timeout: float | None = None) -> None:
        """Wait until ``count`` app-level pings in all have arrived."""
        async def _wait() -> None:
            while self.pings < count:
                if self.closed:
                    raise ConnectionClosed(self.close_code, self.close_reason)
                self._ping_seen.clear()
                await self._ping_seen.wait()  # also set when the connection closes
        await asyncio.wait_for(_wait(), timeout or self.timeout)

    def pause_reading(self) -> None:
        """Stop reading the socket entirely (a frozen tab): back-pressure builds up."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    async def _run(self) -> None:
        """Read until the connection ends; with ``reconnect``, come back and rejoin."""
        ws = self._require_ws()
        try:
            while True:
                self._connected.set()
                await self._read_loop(ws)
                self._connected.clear()
                self._fail_pending()
                if self._app_closed or not self.reconnect or not should_reconnect(
                        self.close_code, fresh_token=self._can_refresh_token()):
                    return
                reconnected = await self._reconnect()
                if reconnected is None:
                    return
                ws = self._ws = reconnected
                self._rejoin = asyncio.get_running_loop().create_task(self._rejoin_rooms())
        finally:
            if self._rejoin is not None and not self._rejoin.done():
                self._rejoin.cancel()
                await asyncio.wait({self._rejoin})
            self._closed.set()
            self._ping_seen.set()
            self._fail_pending()
            self._inbox.put_nowait(_CLOSED)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(self.close_code, self.close_reason))

    def _can_refresh_token(self) -> bool:
        """A callable gives new tokens; a user with a secret (or a handle) gets them issued."""
        if self._token_source is not None:
            return True
        return self._token is None and self._user is not None

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse[Any] | None:
        """Backoff with full jitter, cycling through the targets; None when giving up."""
        attempts = 0
        while self._max_attempts is None or attempts < self._max_attempts:
            attempts += 1
            await asyncio.sleep(self._backoff.next())  # the backoff itself, not synchronisation
            self._target_index = (self._target_index + 1) % len(self._targets)
            target = self._targets[self._target_index]
            try:
                token = (await _call(self._token_source) if self._token_source is not None
                         else self._token)
                url = _resolve(target, token, self._user, self._secret)
                ws = await self._open(url)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.info("reconnect attempt %d to %s failed: %r", attempts, target, exc)
                continue
            try:
                first = _decode((await ws.receive(timeout=self.timeout)).data or "")
            except (asyncio.TimeoutError, TypeError, aiohttp.ClientError):
                first = None
            if not first or first.get("type") != "welcome":
                await ws.close()
                log.info("reconnect attempt %d to %s refused: %s", attempts, target,
                         ws.close_code)
                if not should_reconnect(ws.close_code, fresh_token=self._can_refresh_token()):
                    self.close_code = ws.close_code  # e.g. 4001 with no way to a new token
                    return None
                continue
            self.url, self.welcome = url, first
            self.close_code, self.close_reason = None, ""
            self._backoff.reset()
            self.reconnects += 1
            self._inbox.put_nowait({"type": "reconnected", "instance": first.get("instance"),
                                    "attempts": attempts})
            return ws
        return None

    async def _rejoin_rooms(self) -> None:
        """Rejoin every room with ``since``: the server replays what was missed."""
        for room, seen in list(self.rooms.items()):
            since = (protocol.Since(seen["offset"], seen["epoch"])
                     if seen.get("offset") is not None and seen.get("epoch") else None)
            frame = protocol.join_request(room, since=since)
            try:
                await self.request(frame)
            except (ConnectionClosed, ServerError, asyncio.TimeoutError) as exc:
                log.info("rejoining %s failed: %r", room, exc)
                return

    def _track(self, frame: dict[str, Any], kind: Any) -> bool:
        """Keep ``rooms`` up to date; False for a duplicate message (already seen)."""
        room = frame.get("roomId")
        if kind == "message":
            offset, seen = frame.get("offset"), self.rooms.get(room)  # type: ignore[arg-type]
            if type(offset) is int and seen is not None:
                epoch = frame.get("epoch")
                if epoch is not None and seen["epoch"] is not None and epoch != seen["epoch"]:
                    # the room's history was lost (Redis restarted, TTL): offsets start
                    # again; never a silent gap, never a false duplicate
                    seen["epoch"] = epoch
                    self.lost.append(room)  # type: ignore[arg-type]
                    self._inbox.put_nowait({"type": "history_reset", "roomId": room,
                                            "epoch": epoch})
                elif seen["offset"] is not None and offset <= seen["offset"]:
                    return False
                seen["offset"] = offset
        elif kind == "joined" and isinstance(room, str):
            seen = self.rooms.get(room)
            if "recovered" not in frame or seen is None or seen["epoch"] != frame.get("epoch"):
                # a plain join, or another history: live from the room's top on
                self.rooms[room] = {"offset": frame.get("offset"), "epoch": frame.get("epoch")}
            # else a rejoin in the same epoch: the replay after our position follows
            if "recovered" in frame:
                if not frame["recovered"]:
                    self.lost.append(room)
                # an event for the application, before the replayed messages it announces
                self._inbox.put_nowait({"type": "rejoined", "roomId": room,
                                        "recovered": frame["recovered"],
                                        "offset": frame.get("offset")})
        elif kind == "left" and isinstance(room, str):
            self.rooms.pop(room, None)
        return True

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type in _IGNORED:
                        continue  # binary, or protocol pings when autoping is off
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        self.close_reason = msg.extra or ""
                    break  # CLOSE, CLOSING, CLOSED, ERROR
                frame = _decode(msg.data)
                if frame is None:
                    self.bad_frames += 1
                    log.warning("ignored a server frame that is not a JSON object: %.80r",
                                msg.data)
                    continue
                kind = frame.get("type")
                if kind == "ping":
                    self.pings += 1
                    self._ping_seen.set()
                    if self.answer_pings:
                        await ws.send_str(_PONG)
                    continue
                if kind in ("message", "joined", "left") and not self._track(frame, kind):
                    continue  # a duplicate across a reconnect
                ref = frame.get("ref")
                future = self._pending.get(ref) if isinstance(ref, str) else None
                if future is not None and not future.done() and kind != "message":
                    future.set_result(frame)
                else:
                    self._inbox.put_nowait(frame)
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.close_reason = self.close_reason or str(exc)
        finally:
            self.close_code = ws.close_code

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the client is connected (again, after a drop); ConnectionClosed
        if it closed for good."""
        async def _wait() -> None:
            waits = {asyncio.ensure_future(self._connected.wait()),
                     asyncio.ensure_future(self._closed.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in waits:
                    fut.cancel()
                await asyncio.wait(waits)
            if not self._connected.is_set():
                raise ConnectionClosed(self.close_code, self.close_reason)
        await asyncio.wait_for(_wait(), timeout or self.timeout)

    def drop(self) -> None:
        """Drop the TCP connection without a close frame, as a network failure would
        (with ``reconnect``, the client then reconnects)."""
        ws = self._ws
        conn = getattr(ws, "_response", None)
        transport = getattr(getattr(conn, "connection", None), "transport", None)
        if transport is not None:
            transport.abort()

    async def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait until the server closes the connection; return the close code."""
        await asyncio.wait_for(self._closed.wait(), timeout or self.timeout)
        return self.close_code

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000) -> None:
        """Close cleanly (idempotent)."""
        await self._teardown(code)

    async def kill(self) -> None:
        """Drop the TCP connection without a closing handshake (a crashed peer), for good."""
        self._app_closed = True
        self.drop()
        await self._teardown()

    async def _teardown(self, code: int = 1000) -> None:
        self._app_closed = True
        self._reading.set()
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.close(code=code)
            except (aiohttp.ClientError, ConnectionError):
                pass
        if self._reader is not None:
            if not self._reader.done():
                self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _require_ws(self) -> aiohttp.ClientWebSocketResponse[Any]:
        if self._ws is None:
            raise RuntimeError("not connected: await client.connect() first")
        return self._ws

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self._ws is not None else "new")
        return f"<wskit.Client user={self.user!r} {state}>"


class _Connector:
    """``await connect(...)`` and ``async with connect(...)`` both work."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._client.connect().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


def connect(target: Any, **kwargs: Any) -> _Connector:
    """Connect to a server (a ws:// URL or a handle from :func:`wskit.serve`).

    Keyword arguments are :class:`Client`'s: ``user=`` (a token is issued with
    the handle's secret, or ``secret=``), ``token=``, ``answer_pings=``...
    """
    return _Connector(Client(target, **kwargs))


class _LoopThread:
    """One background event loop shared by every :class:`SyncClient`."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Awaitable[Any], timeout: float | None) -> Any:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="wskit-client",
                                 daemon=True).start()
                cls._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result(timeout)  # type: ignore[arg-type]


class SyncClient:
    """Blocking facade over :class:`Client`, for scripts and the REPL."""

    def __init__(self, target: Any, **kwargs: Any) -> None:
        self._timeout = kwargs.get("timeout", 5.0)
        self._client: Client = self._run(self._make(target, kwargs))
        self._run(self._client.connect())

    @staticmethod
    async def _make(target: Any, kwargs: dict[str, Any]) -> Client:
        return Client(target, **kwargs)  # built on the loop its queues belong to

    def _run(self, coro: Awaitable[Any], extra: float = 5.0) -> Any:
        return _LoopThread.run(coro, self._timeout + extra)

    def join(self, room: str) -> dict[str, Any]:
        return self._run(self._client.join(room))

    def leave(self, room: str) -> dict[str, Any]:
        return self._run(self._client.leave(room))

    def send(self, room: str, content: str) -> dict[str, Any]:
        return self._run(self._client.send(room, content))

    def direct(self, to: str, content: str) -> dict[str, Any]:
        return self._run(self._client.direct(to, content))

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        return self._run(self._client.receive(timeout), extra=(timeout or self._timeout))

    def send_raw(self, data: str | bytes | dict[str, Any]) -> None:
        self._run(self._client.send_raw(data))

    @property
    def welcome(self) -> dict[str, Any]:
        return self._client.welcome

    @property
    def lost(self) -> list[str]:
        """Rooms where messages were lost across a reconnect (``recovered: false``, or
        a new epoch): check it after a reconnect, as an async client awaits events."""
        return list(self._client.lost)

    @property
    def reconnects(self) -> int:
        return self._client.reconnects

    def close(self) -> None:
        self._run(self._client.close())

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
