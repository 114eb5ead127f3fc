"""The client's half of token lifetime: refresh the live connection's token before it expires.

A wskit server closes a connection with 4001 "token expired" at its token's ``exp``
(``welcome.expiresAt``), unless the client sends ``{"type": "refresh", "token": T}``
first (answered ``refreshed`` with the new ``expiresAt``). :class:`Refresher` does
that for :class:`wskit.Client`: it asks the client's token callable (or issues one,
for a client made with ``user=``) half-way through the token's remaining life, and at
most :data:`LEAD` seconds before it ends, so a slow identity provider has time.

``expiresAt`` is the server's clock (Unix time): a client whose clock is far off
refreshes early or late; the server's ``token_grace`` covers small skews.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core import protocol
from ..exceptions import ConnectionClosed, ServerError

__all__ = ["Refresher", "refresh_delay", "LEAD"]

log = logging.getLogger("wskit.client")

#: refresh at most this long before expiry (seconds)
LEAD = 30.0
#: never refresh more often than this (a token source that returns the same token)
_FLOOR = 0.25


def refresh_delay(now: float, expires_at: float) -> float:
    """How long to wait before refreshing a token that expires at ``expires_at``:
    half its remaining life, but no later than :data:`LEAD` s before it ends."""
    remaining = expires_at - now
    if remaining <= 0:
        return 0.0
    return max(min(_FLOOR, remaining / 2), remaining - min(LEAD, remaining / 2))


class Refresher:
    """Refreshes ``client``'s token for as long as it runs (:meth:`start`, :meth:`stop`).

    ``client`` is a :class:`wskit.Client` (its ``welcome``, ``request`` and
    ``wait_connected``); ``token`` gives a new token for the same user.
    """

    def __init__(self, client: Any, token: Callable[[], Awaitable[str]]) -> None:
        self.client = client
        self._token = token
        self._task: asyncio.Task[None] | None = None
        #: refreshes the server accepted
        self.refreshes = 0

    def start(self) -> Refresher:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="wskit-refresh")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        client = self.client
        failures = 0
        while True:
            expires = client.welcome.get("expiresAt")  # a reconnect brings a new welcome
            if not isinstance(expires, (int, float)):
                return  # a token without exp, or a server without refresh
            # until it is time to refresh (the token's life is wall-clock time), or the
            # client closes for good: then there is nothing left to refresh
            try:
                await client.wait_closed(timeout=max(1e-3, refresh_delay(time.time(), expires)))
                return
            except asyncio.TimeoutError:
                pass
            try:
                token = await self._token()
                reply = await client.request(protocol.refresh_request(token))
            except ConnectionClosed:
                try:
                    await client.wait_connected(timeout=24 * 3600)  # reconnecting, or gone
                except (ConnectionClosed, asyncio.TimeoutError):
                    return
                await asyncio.sleep(_FLOOR)  # the close may not have been seen yet
                continue
            except (ServerError, asyncio.TimeoutError) as exc:
                failures += 1
                wait = min(LEAD, _FLOOR * 2 ** failures)  # a refusal may well repeat
                log.warning("token refresh failed (retrying in %.2g s): %s", wait, exc)
                await asyncio.sleep(wait)
                continue
            except Exception:
                log.exception("the token source failed; the connection closes at expiry")
                return
            self.refreshes += 1
            failures = 0
            client.welcome["expiresAt"] = reply.get("expiresAt")
