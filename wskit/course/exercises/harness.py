"""Harnesses: where a check needs the learner's code inside a server or on sockets.

Each runs beside the learner's definitions (``ns``): in the notebook's kernel for
the learner's feedback, in the sandbox when grading. It takes the cases the check
drew (plain values), plays them, and returns what it *observed* (plain values).
It judges nothing and holds no expected value: the check does that, outside. Code
that forges an observation must produce what a correct answer would, which is as
much work as the exercise.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["dead_socket_broadcast", "retry_outages", "pong_watch_live", "rate_limited_server",
           "members_across_instances"]


async def _settle(value: Any, timeout: float) -> Any:
    return await asyncio.wait_for(value, timeout) if inspect.isawaitable(value) else value


def _raised(exc: BaseException) -> dict[str, str]:
    return {"kind": type(exc).__name__, "text": repr(exc)[:500],
            "code": str(getattr(exc, "code", ""))}


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- 1.1 ------------------------------------------------------------------------------

class _Socket:
    """The seed's ``web.WebSocketResponse`` as far as a broadcast sees it: ``send_json``.
    ``dead`` raises what aiohttp raises on a closing transport; ``stuck`` never returns
    (a reader whose TCP window is zero); ``on_send`` yields mid-send (another user joins)."""

    def __init__(self, error: BaseException | None = None, stuck: bool = False,
                 on_send: Callable[[], None] | None = None) -> None:
        self.received: list[Any] = []
        self.error, self.stuck, self.on_send = error, stuck, on_send

    async def send_json(self, data: Any) -> None:
        if self.error is not None:
            raise self.error
        if self.stuck:
            await asyncio.Event().wait()
        if self.on_send is not None:
            self.on_send()
            await asyncio.sleep(0)
        self.received.append(data)


def _error(kind: int) -> BaseException:
    import aiohttp

    return (ConnectionResetError("Cannot write to closing transport"),
            RuntimeError("WebSocket is not connected"),
            aiohttp.ClientConnectionResetError("Cannot write to closing transport"))[kind % 3]


async def dead_socket_broadcast(ns: dict[str, Any], rounds: list[dict[str, Any]]) -> list[Any]:
    """Each round: a fresh seed manager, its users' sockets (dead, stuck, one that
    lets a newcomer join mid-send), ``broadcasts`` calls; then what each socket got
    and who is still in the manager, once deliveries settled (bounded)."""
    from ..seed.aiohttp_manager import WebSocketManager

    broadcast = ns["broadcast_to_room"]
    before = asyncio.all_tasks()
    seen = []
    try:
        for r in rounds:
            manager = WebSocketManager()
            room, newcomer = r["room"], r["newcomer"]
            sockets: dict[str, _Socket] = {}

            def join_late(room: str = room, newcomer: str = newcomer,
                          manager: Any = manager) -> None:
                manager.rooms[room].add(newcomer)

            for user in r["users"]:
                sockets[user] = _Socket(
                    error=_error(r["dead"][user]) if user in r["dead"] else None,
                    stuck=user in r["stuck"], on_send=join_late if user == r["slow"] else None)
                await manager.connect(user, sockets[user])
                await manager.join_room(user, room)
                await manager.join_room(user, "elsewhere")
            sockets[newcomer] = _Socket()
            await manager.connect(newcomer, sockets[newcomer])
            raised, took = None, 0.0
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n in range(r["broadcasts"]):
                try:
                    # Each broadcast in a task of its own, as a server calls it for each
                    # message it reads: the writers get the loop between two broadcasts.
                    # (Since 3.12 wait_for runs a bare coroutine inline, so 300 broadcasts
                    # would land in one loop turn and fill every live reader's outbox.)
                    call = broadcast(manager, room, {**r["message"], "n": n}, r["exclude"])
                    await _settle(asyncio.ensure_future(call) if inspect.isawaitable(call)
                                  else call, r["limit"])
                except asyncio.TimeoutError:
                    raised = {"kind": "Timeout", "text": "", "code": ""}
                    break
                except Exception as exc:
                    raised = _raised(exc)
                    break
            took = loop.time() - started
            live = [u for u in r["users"] if u not in r["dead"] and u not in r["stuck"]
                    and u != r["exclude"]]
            if raised is None:  # writers may still be delivering: bounded
                await _until(lambda: all(len(sockets[u].received) >= r["broadcasts"]
                                         for u in live)
                             and not any(u in manager.connections for u in r["dead"]), 2.0)
            seen.append({"raised": raised, "took": took,
                         "received": {u: s.received for u, s in sockets.items()},
                         "connections": sorted(manager.connections),
                         "rooms": {k: sorted(v) for k, v in manager.rooms.items()}})
    finally:
        for task in asyncio.all_tasks() - before:  # the learner's writers, if any
            task.cancel()
    return seen


# -- 3.1 ------------------------------------------------------------------------------

async def retry_outages(ns: dict[str, Any], me: str, peer: str, contents: list[str],
                        outages: list[float], attempts: int, base: float) -> dict[str, Any]:
    """Two servers, only A's cable to Redis cut and mended. Plays: a direct with Redis
    up, one to an offline user, one across each outage, one in a permanent outage;
    records each call of ``client.direct`` (sent, answered), each reply or error, each frame."""
    import secrets

    from ...backplane.fakeserver import FakeRedisServer
    from ...client.aio import Client
    from ...devtools.deploy import IdleRelay
    from ...runner.serve import serve

    retry = ns["direct_with_retry"]
    fake = FakeRedisServer().start()
    link = IdleRelay((fake.host, fake.port), idle_timeout=None)
    secret = secrets.token_hex(32)
    a = b = None
    clients: list[Any] = []
    seen: dict[str, Any] = {"steps": []}
    loop = asyncio.get_running_loop()
    try:
        await link.start()
        a = await serve("aiohttp", name="exercise-3-1a", backplane=f"redis://{link.address}/0",
                        secret=secret)
        b = await serve("fastapi", name="exercise-3-1b", backplane=fake.url, secret=secret)
        sender = await Client(a, user=me).connect()
        receiver = await Client(b, user=peer).connect()
        clients = [sender, receiver]
        calls: list[list[float]] = []  # [sent, answered] per call of client.direct
        real = sender.direct

        async def counted(to: str, content: str) -> Any:
            calls.append([loop.time(), loop.time()])
            try:
                return await real(to, content)
            finally:
                calls[-1][1] = loop.time()

        sender.direct = counted  # type: ignore[method-assign]

        async def step(to: str, content: str, tries: int, outage: float | None,
                       forever: bool = False) -> None:
            calls.clear()
            if outage is not None or forever:
                link.cut()
            task = asyncio.ensure_future(_settle(retry(sender, to, content, tries, base), 30))
            if outage is not None:
                await asyncio.sleep(outage)  # the outage lasts this long
                link.mend()
            found: dict[str, Any] = {"to": to, "content": content, "attempts": tries}
            try:
                found["reply"] = await task
            except Exception as exc:
                found["raised"] = _raised(exc)
            if forever:
                link.mend()
            found["calls"] = [[a - calls[0][0], b - calls[0][0]] for a, b in calls]
            frames: list[Any] = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    first = not frames and to == peer and "reply" in found
                    frames.append(await receiver.receive(timeout=3 if first else 0.3))
            found["frames"] = frames
            seen["steps"].append(found)

        await step(peer, contents[0], 5, None)
        await step("nobody-" + contents[1], "hello?", 4, None)
        for outage, content in zip(outages, contents[2:]):
            await step(peer, content, 12, outage)
        await step(peer, contents[-1], attempts, None, forever=True)
    finally:
        for client in clients:
            await client.close()
        for handle in (a, b):
            if handle is not None:
                await handle.stop()
        await link.stop()
        fake.stop()
    return _jsonable(seen)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=repr))


# -- 4.1 ------------------------------------------------------------------------------

async def pong_watch_live(ns: dict[str, Any], interval: float, timeout: float) -> dict[str, Any]:
    """A real aiohttp server pings two clients through the learner's class; one answers,
    one is silent. Reports when each was closed (seconds after connecting)."""
    import aiohttp
    from aiohttp import WSMsgType, web

    from ...client.aio import _decode
    from ...runner.serve import serve_app

    watch_class = ns["PongWatch"]
    closed: dict[str, float] = {}
    errors: list[str] = []
    loop = asyncio.get_running_loop()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        watch = watch_class(timeout)

        async def pinger() -> None:
            try:
                while not ws.closed:
                    now = loop.time()
                    if watch.dead(now):
                        closed[request.query["user"]] = now
                        await ws.close(code=4002, message=b"heartbeat timeout")
                        return
                    watch.ping(now)
                    await ws.send_json({"type": "ping"})
                    await asyncio.sleep(interval)
            except Exception as exc:
                errors.append(repr(exc))

        task = asyncio.ensure_future(pinger())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and (_decode(msg.data) or {}).get("type") == "pong":
                    watch.pong(loop.time())
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    handle = await serve_app(app, name="exercise-4-1")
    try:
        async with aiohttp.ClientSession() as session:
            live = await session.ws_connect(f"http://127.0.0.1:{handle.port}/ws?user=live")
            silent = await session.ws_connect(f"http://127.0.0.1:{handle.port}/ws?user=silent")
            started = loop.time()

            async def answer() -> None:
                async for msg in live:
                    if msg.type == WSMsgType.TEXT and "ping" in msg.data:
                        await live.send_json({"type": "pong"})

            answering = asyncio.ensure_future(answer())
            try:
                await _until(lambda: "silent" in closed or bool(errors), 5 + interval + timeout)
                await asyncio.sleep(3 * timeout)  # the answering one must stay open meanwhile
            finally:
                answering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answering
                await live.close()
                await silent.close()
    finally:
        await handle.stop()
    return {"closed": {u: t - started for u, t in closed.items()}, "errors": errors}


# -- 5.4 ------------------------------------------------------------------------------

async def rate_limited_server(ns: dict[str, Any], frames: int) -> dict[str, Any]:
    """wskit with the learner's limiter (5/s, burst 3) in front of every frame; a
    spammer sends ``frames`` at once, a calm user one. Reports what each was told."""
    import secrets

    from ...client.aio import Client
    from ...core.protocol import error_frame
    from ...runner.serve import serve
    from ...server.chat import ChatServer

    limiter_class = ns["RateLimiter"]

    class LimitedServer(ChatServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.limiter = limiter_class(5.0, 3)

        async def handle_text(self, conn: Any, text: str) -> None:
            if not self.limiter.allow(conn.user, asyncio.get_running_loop().time()):
                conn.deliver(error_frame("rate_limited", "slow down"))
                return
            await super().handle_text(conn, text)

    handle = await serve("fastapi", name="exercise-5-4", server=LimitedServer(
        backplane="none", secret=secrets.token_hex(32)))
    try:
        spammer = await Client(handle, user="spammer").connect()
        calm = await Client(handle, user="calm").connect()
        try:
            await spammer.join("r")
            await calm.join("r")
            for i in range(frames):
                await spammer.send_raw({"type": "message", "roomId": "r", "content": str(i)})
            limited = 0
            for _ in range(frames):
                limited += (await spammer.receive(timeout=5)).get("code") == "rate_limited"
            calm_reply = await calm.send("r", "I am fine")
        finally:
            await spammer.close()
            await calm.close()
    finally:
        await handle.stop()
    return {"limited": limited, "calm": calm_reply.get("type")}


# -- 5.5 ------------------------------------------------------------------------------

async def members_across_instances(ns: dict[str, Any], room: str, near: str,
                                   on_a: list[str], on_b: list[str],
                                   on_near: list[str]) -> dict[str, Any]:
    """Two instances on one fakeredis; ``room`` has users on both, ``near`` (a room id
    that starts with ``room:``) users on A only. A announces with ttl 30, B with 1.
    Reports the keys written and their TTLs, the member lists, and ``room``'s list
    once B's announcement has had time to expire."""
    import secrets

    import fakeredis

    from ...backplane import shared_fake_server
    from ...client.aio import Client
    from ...runner.serve import serve

    announce, room_members = ns["announce"], ns["room_members"]
    url = f"fakeredis://exercise-5-5-{secrets.token_hex(3)}"
    redis = fakeredis.FakeAsyncRedis(server=shared_fake_server(url[len("fakeredis://"):]),
                                     decode_responses=True)
    secret = secrets.token_hex(32)
    a = await serve("aiohttp", name="exercise-5-5a", backplane=url, secret=secret)
    b = await serve("fastapi", name="exercise-5-5b", backplane=url, secret=secret)
    clients = []
    seen: dict[str, Any] = {}
    try:
        for handle, rooms in ((a, {room: on_a, near: on_near}), (b, {room: on_b})):
            for name, users in rooms.items():
                for user in users:
                    client = await Client(handle, user=user).connect()
                    clients.append(client)
                    await client.join(name)
        assert a.server is not None and b.server is not None
        ns_ = a.server.settings.namespace
        before = set(await redis.keys("*"))
        for handle, name, ttl in ((a, room, 30), (a, near, 30), (b, room, 1)):
            server = handle.server
            assert server is not None
            await _settle(announce(redis, ns_, name, server.instance_id,
                                   sorted(server.hub.members(name)), ttl), 10)
        written = sorted(set(await redis.keys("*")) - before)
        seen["ttls"] = {key: await redis.ttl(key) for key in written}
        seen["room"] = await _settle(room_members(redis, ns_, room), 10)
        seen["near"] = await _settle(room_members(redis, ns_, near), 10)
        await asyncio.sleep(1.5)  # B's ttl is 1 s: Redis expires it meanwhile
        seen["after"] = await _settle(room_members(redis, ns_, room), 10)
    finally:
        for client in clients:
            await client.close()
        await a.stop()
        await b.stop()
        await redis.aclose()
    return _jsonable(seen)
