"""Where the client connects, with which token, and the attempts of a reconnect.

Kept apart from :class:`wskit.client.Client` because it is the one part that
knows about targets and tokens: a list of servers to cycle through, a token
given once or a callable asked on every connect, a user name turned into a token
with a server handle's (or a given) secret. The reconnect *policy* (which close
codes, what backoff) is sans-I/O in :mod:`wskit.core.reconnect`; this is its loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from ..core.reconnect import Backoff, should_reconnect
from ..security.tokens import issue_token
from .frames import decode

__all__ = ["Dialer", "TokenSource", "Redialed"]

log = logging.getLogger("wskit.client")

#: a callable giving a fresh token for each (re)connection, sync or async
TokenSource = Callable[[], str | Awaitable[str]]
WebSocket = aiohttp.ClientWebSocketResponse


async def _call(source: TokenSource) -> str:
    token = source()
    return await token if inspect.isawaitable(token) else token


def resolve(target: Any, token: str | None, user: str | None, secret: str | None) -> str:
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


@dataclass(slots=True)
class Redialed:
    """A reconnect that got as far as the server's ``welcome``."""

    ws: WebSocket[Any]
    url: str
    welcome: dict[str, Any]
    attempts: int


class Dialer:
    """Targets, tokens and socket options: everything needed to open a connection."""

    def __init__(self, target: Any, *, user: str | None, token: str | TokenSource | None,
                 secret: str | None, headers: dict[str, str] | None, max_msg_size: int,
                 protocol_pongs: bool, ssl: ssl_module.SSLContext | None,
                 backoff: Backoff | None, max_attempts: int | None) -> None:
        #: several targets (URLs or handles): reconnects cycle through them
        self.targets = list(target) if isinstance(target, (list, tuple)) else [target]
        self.index = 0
        self.user, self._secret = user, secret
        self._token_source = token if callable(token) else None
        self._token = None if callable(token) else token
        self._headers = headers
        self._max_msg_size = max_msg_size
        self._protocol_pongs = protocol_pongs
        #: for wss:// with a private CA (a proxy's throwaway certificate); None: the system's
        self._ssl = ssl
        self.backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        #: the close code of the last refused attempt (e.g. 4001), once redial gives up
        self.refused_code: int | None = None

    def first_url(self) -> str:
        """The first target's URL with the token known now (a callable's comes on connect)."""
        return resolve(self.targets[0], self._token, self.user, self._secret)

    async def fresh_url(self, url: str) -> str:
        """The first connect's URL: ``url`` again, unless a token source gives a new token."""
        return await self.url(self.targets[0]) if self._token_source is not None else url

    async def url(self, target: Any) -> str:
        """``target``'s URL with a token: a token source is asked for a fresh one."""
        token = await _call(self._token_source) if self._token_source is not None else self._token
        return resolve(target, token, self.user, self._secret)

    async def new_token(self) -> str:
        """A fresh token for this client's user, to refresh the live connection."""
        if self._token_source is not None:
            return await _call(self._token_source)
        target = self.targets[self.index]
        if hasattr(target, "token") and not isinstance(target, str):
            return str(target.token(self.user))
        return issue_token(self.user or "", self._secret)

    def can_refresh_token(self) -> bool:
        """A callable gives new tokens; a user with a secret (or a handle) gets them issued."""
        if self._token_source is not None:
            return True
        return self._token is None and self.user is not None

    async def open(self, session: aiohttp.ClientSession, url: str,
                   timeout: float) -> WebSocket[Any]:
        return await session.ws_connect(
            url, headers=self._headers, max_msg_size=self._max_msg_size,
            ssl=self._ssl if self._ssl is not None else True,
            autoping=self._protocol_pongs, timeout=aiohttp.ClientWSTimeout(ws_close=timeout))

    async def redial(self, session: aiohttp.ClientSession, timeout: float) -> Redialed | None:
        """Backoff with full jitter, cycling through the targets; None when giving up."""
        attempts = 0
        self.refused_code = None
        while self._max_attempts is None or attempts < self._max_attempts:
            attempts += 1
            await asyncio.sleep(self.backoff.next())  # the backoff itself, not synchronisation
            self.index = (self.index + 1) % len(self.targets)
            target = self.targets[self.index]
            try:
                url = await self.url(target)
                ws = await self.open(session, url, timeout)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.info("reconnect attempt %d to %s failed: %r", attempts, target, exc)
                continue
            try:
                first = decode((await ws.receive(timeout=timeout)).data or "")
            except (asyncio.TimeoutError, TypeError, aiohttp.ClientError):
                first = None
            if not first or first.get("type") != "welcome":
                await ws.close()
                log.info("reconnect attempt %d to %s refused: %s", attempts, target,
                         ws.close_code)
                if not should_reconnect(ws.close_code, fresh_token=self.can_refresh_token()):
                    self.refused_code = ws.close_code  # e.g. 4001 with no way to a new token
                    return None
                continue
            self.backoff.reset()
            return Redialed(ws, url, first, attempts)
        return None
