"""``wskit.inspect(server_or_url, ...)``: the inspector page's view, as a notebook widget.

The same data as ``GET /inspect`` (:func:`wskit.server.snapshot.snapshot`): rooms
with their members, connections with their outbox fill, messages per second,
closes by code and the last closes, recovery counts, one column per instance.
A server of this kernel is read directly; a URL is read over HTTP with its API key.

It is an ``ipywidgets.HTML`` whose ``value`` a task on the kernel's loop rewrites
every ``interval`` seconds: the front end redraws it as the model changes, and
``await view.refresh()`` updates it at once (what a notebook's check waits on).
Everything shown is escaped: user names and close reasons are chosen by clients.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError

if TYPE_CHECKING:
    pass


class Inspector:
    """A live view of one or more instances (see the module docstring)."""

    def __init__(self, targets: tuple[Any, ...], *, interval: float = 0.5,
                 api_key: str | None = None) -> None:
        try:
            import ipywidgets
        except ImportError:
            raise ConfigError("wskit.inspect needs ipywidgets: pip install 'wskit[lab]'"
                              ) from None
        if not targets:
            raise ConfigError("wskit.inspect needs a server or a URL to watch")
        if any(isinstance(t, str) for t in targets) and api_key is None:
            raise ConfigError("watching a URL needs its API key: api_key=...")
        self.targets = targets
        self.interval = interval
        self.api_key = api_key
        self.widget = ipywidgets.HTML(value="<i>wskit inspector: starting</i>")
        #: the latest snapshots, one per target (None where it could not be read)
        self.snapshots: list[dict[str, Any] | None] = [None] * len(targets)
        self._previous: list[dict[str, Any] | None] = [None] * len(targets)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Inspector:
        """Refresh every ``interval`` seconds on the running loop (the kernel's)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="wskit-inspector")
        return self

    def stop(self) -> None:
        """Stop refreshing (the view keeps its last state)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval)  # a refresh period, not synchronisation

    async def refresh(self) -> list[dict[str, Any] | None]:
        """Read every target now and redraw; returns the snapshots."""
        snaps = [await self._read(t) for t in self.targets]
        self._previous, self.snapshots = self.snapshots, snaps
        self.widget.value = render(snaps, self._previous)
        return snaps

    async def _read(self, target: Any) -> dict[str, Any] | None:
        from ..server.snapshot import snapshot

        if isinstance(target, str):
            return await self._fetch(target)
        server = getattr(target, "server", target)  # a RunningServer, or a ChatServer
        if server is None:
            return None  # a stopped RunningServer
        return snapshot(server)

    async def _fetch(self, url: str) -> dict[str, Any] | None:
        import aiohttp

        try:
            async with aiohttp.ClientSession() as session, session.get(
                    url.rstrip("/") + "/api/inspect",
                    headers={"Authorization": f"Bearer {self.api_key}"},
                    timeout=aiohttp.ClientTimeout(total=max(self.interval, 2.0))) as resp:
                if resp.status != 200:
                    return {"error": f"{url}: HTTP {resp.status}"}
                data: dict[str, Any] = await resp.json()
                return data
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return {"error": f"{url}: {exc or type(exc).__name__}"}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "live" if self._task is not None and not self._task.done() else "stopped"
        return f"<wskit Inspector of {len(self.targets)} instance(s), {state}>"


def inspect(*targets: Any, interval: float = 0.5, api_key: str | None = None) -> Inspector:
    """Watch servers live in a notebook: ``wskit.inspect(a, b)`` (servers of this
    kernel) or ``wskit.inspect("http://127.0.0.1:8765", api_key=K)``.

    Call it where a loop runs (a notebook cell does); display the result (the last
    expression of a cell). ``view.stop()`` ends the refreshing.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigError("wskit.inspect runs on a running event loop: call it in a "
                          "notebook cell or a coroutine") from None
    return Inspector(targets, interval=interval, api_key=api_key).start()


# -- rendering (pure: snapshots in, HTML out) -------------------------------------------

_E = html.escape


def _rate(now: dict[str, Any], before: dict[str, Any] | None, name: str) -> str:
    if not before or "counts" not in before or now["time"] <= before["time"]:
        return "-"
    return f"{(now['counts'][name] - before['counts'][name]) / (now['time'] - before['time']):.1f}"


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    top = "".join(f"<th>{_E(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{top}</tr>{body}</table>'


def _column(snap: dict[str, Any] | None, before: dict[str, Any] | None) -> str:
    if snap is None:
        return "<div><i>stopped</i></div>"
    if "error" in snap:
        return f"<div><b>unreachable</b>: {_E(snap['error'])}</div>"
    bp = snap["backplane"]
    backplane = "none" if bp is None else ("up" if bp["up"] else "<b>DOWN</b>") + (
        f" ({bp['reconnects']} reconnects)" if bp else "")
    c = snap["counts"]
    limit = snap["outboxLimit"]
    rooms = [[_E(room), _E(", ".join(users))] for room, users in snap["rooms"].items()]
    conns = [[_E(x["user"]), _E(", ".join(x["rooms"])),
              f'<meter max="{limit}" value="{x["outbox"]}"></meter> {x["outbox"]}']
             for x in snap["connections"]]
    closes = [[_E(code), str(n)] for code, n in snap["closes"].items()]
    recent = [[time.strftime("%H:%M:%S", time.localtime(x["time"])),
               _E(x["user"] or "-"), str(x["code"]), _E(x["reason"])]
              for x in reversed(snap["recentCloses"])]
    return (f'<div class="wskit-instance"><h4>{_E(snap["instance"])}'
            f'{" (draining)" if snap["draining"] else ""}</h4>'
            f"<p>messages/s <b>{_rate(snap, before, 'posts')}</b> · deliveries/s "
            f"<b>{_rate(snap, before, 'deliveries')}</b> · connections "
            f"<b>{snap['connectionCount']}</b> · backplane {backplane} · recoveries "
            f"{c['recovered']} recovered, {c['notRecovered']} not</p>"
            + _table(["room", "members here"], rooms, "rooms")
            + _table(["user", "rooms", "outbox"], conns, "connections")
            + _table(["code", "closes"], closes, "closes")
            + _table(["when", "user", "code", "reason"], recent, "recent") + "</div>")


def render(snaps: list[dict[str, Any] | None],
           previous: list[dict[str, Any] | None] | None = None) -> str:
    """The widget's HTML: one column per instance (rates against ``previous``)."""
    previous = previous or [None] * len(snaps)
    cols = "".join(_column(s, p) for s, p in zip(snaps, previous))
    return ('<div class="wskit-inspector" style="display:flex;gap:2em;flex-wrap:wrap">'
            f"{cols}</div>")
