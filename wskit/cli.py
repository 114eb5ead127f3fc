"""Command line: ``python -m wskit {serve,token,fakeredis,demo,student-copies,grade,course-html,bench}``.

Every command that starts something prints the URL(s) to use on stdout, flushed,
once it is listening, then serves until interrupted (Ctrl-C exits with 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .exceptions import WskitError
from .runner.serve import FRAMEWORKS, LOOPS, run, serve
from .runner.signals import stop_on_signals
from .security.policy import POLICIES
from .security.tokens import issue_token

__all__ = ["main"]


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--secret", help="HS256 token secret, 32+ bytes (default: $WSKIT_SECRET, else "
                                    "a published dev secret, allowed on loopback only)")
    p.add_argument("--redis", metavar="URL", default=None,
                   help="backplane: redis://..., fakeredis://, memory:// or none "
                        "(default: $WSKIT_REDIS_URL, else fakeredis in this process)")
    p.add_argument("--ping-interval", type=_positive, default=20.0, metavar="S",
                   help="app-level ping period (default 20)")
    p.add_argument("--ping-timeout", type=_positive, default=20.0, metavar="S",
                   help="close with 4002 when a pong is this late (default 20)")
    p.add_argument("--no-ping", action="store_true", help="turn the app-level heartbeat off")
    p.add_argument("--protocol-ping-interval", type=_positive, default=None, metavar="S",
                   help="RFC 6455 ping frames every S seconds (default off)")
    p.add_argument("--protocol-ping-timeout", type=_positive, default=None, metavar="S")
    p.add_argument("--max-message-size", type=int, default=64 * 1024, metavar="BYTES")
    p.add_argument("--compression", action="store_true",
                   help="accept permessage-deflate when a client offers it (default off: "
                        "tens of KB per connection, a compression per receiver per broadcast)")
    p.add_argument("--content-type", choices=("text", "json"), default="text",
                   help="what a post's content may be: a string (text), or also a JSON "
                        "object (json)")
    p.add_argument("--history-size", type=int, default=100, metavar="N",
                   help="messages kept per room for recovery and history (0: off)")
    p.add_argument("--history-ttl", type=float, default=3600.0, metavar="SECONDS",
                   help="a room's history expires this long after its last use")
    p.add_argument("--presence-ttl", type=_positive, default=30.0, metavar="SECONDS",
                   help="presence entries of an instance that stopped refreshing (killed) "
                        "expire after this long (default 30)")
    p.add_argument("--presence-events", action="store_true",
                   help="send members presence join/leave events")
    p.add_argument("--drain-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="on stop or SIGTERM, time given to close every connection with 1012")
    p.add_argument("--namespace", default="wskit",
                   help="prefix of every Redis key and channel (several apps on one Redis)")
    p.add_argument("--rate-limit", type=float, default=None, metavar="FRAMES_PER_S",
                   help="per-connection token bucket; over it: rate_limited errors, then 4029")
    p.add_argument("--rate-burst", type=int, default=None, metavar="FRAMES",
                   help="the bucket's size (default: twice --rate-limit)")
    p.add_argument("--origin", action="append", default=None, metavar="ORIGIN",
                   help="allowed browser Origin (repeatable; '*': any); default: same-origin "
                        "pages only (Origin host equal to Host) and clients sending no Origin")
    p.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                   help="a Host name /healthz and /token answer (repeatable), besides IP "
                        "addresses, localhost and --host (DNS rebinding guard)")
    p.add_argument("--jwks-url", metavar="URL", default=None,
                   help="identity provider's JWKS: accept RS256/ES256 tokens signed by its "
                        "keys (HS256 tokens are then refused)")
    p.add_argument("--audience", metavar="AUD", default=None,
                   help="the 'aud' a token must carry")
    p.add_argument("--issuer", metavar="ISS", default=None,
                   help="the 'iss' a token must carry")
    p.add_argument("--max-token-lifetime", type=_positive, default=None, metavar="SECONDS",
                   help="refuse tokens whose exp - iat exceeds this ('iat' required); "
                        "default: no maximum")
    p.add_argument("--handshake-timeout", type=_positive, default=10.0, metavar="SECONDS",
                   help="drop a connection whose request head is not complete in time "
                        "(default 10)")
    p.add_argument("--dev-tokens", action="store_true",
                   help="enable GET /token?user=NAME (development only: anyone gets a token)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="turn the HTTP API (/api/...) on, for 'Authorization: Bearer KEY' "
                        "(default: $WSKIT_API_KEY; unset: the API is off)")
    p.add_argument("--backplane-key", default=None, metavar="KEY",
                   help="sign backplane envelopes and history with this key, shared by every "
                        "instance, and drop what it does not sign (default: "
                        "$WSKIT_BACKPLANE_KEY; unset: each instance proves only its own)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve GET /metrics")
    p.add_argument("--loop", choices=LOOPS, default="asyncio",
                   help="event loop (uvloop: pip install 'wskit[fast]'; default asyncio)")
    p.add_argument("--authorize", choices=POLICIES, default=None,
                   help="who may do what (docs/authorization.md): open lets every user do "
                        "everything, claims reads the token's 'rooms' claim (default: open on "
                        "loopback, claims on any other --host)")
    p.add_argument("--token-grace", type=float, default=0.0, metavar="SECONDS",
                   help="close a connection this long after its token's exp (default 0)")
    p.add_argument("--max-rooms-per-connection", type=int, default=128, metavar="N",
                   help="rooms one connection may be in (default 128; over it: too_many_rooms)")
    p.add_argument("--max-connections-per-user", type=int, default=None, metavar="N",
                   help="connections per user on this instance (default: no bound; over: 4009)")
    p.add_argument("--max-connections-per-ip", type=int, default=None, metavar="N",
                   help="connections per client IP on this instance (default: no bound; "
                        "over: 4009)")


def _settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    ping = None if args.no_ping else args.ping_interval
    return dict(
        secret=args.secret, backplane=args.redis,
        ping_interval=ping, ping_timeout=None if args.no_ping else args.ping_timeout,
        protocol_ping_interval=args.protocol_ping_interval,
        protocol_ping_timeout=args.protocol_ping_timeout,
        max_message_size=args.max_message_size, compression=args.compression,
        content_type=args.content_type,
        rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        history_size=args.history_size, history_ttl=args.history_ttl,
        drain_timeout=args.drain_timeout, namespace=args.namespace,
        presence_ttl=args.presence_ttl, presence_events=args.presence_events,
        origins=tuple(args.origin) if args.origin else None,
        dev_tokens=args.dev_tokens,
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
        jwks_url=args.jwks_url, audience=args.audience, issuer=args.issuer,
        max_token_lifetime=args.max_token_lifetime, handshake_timeout=args.handshake_timeout,
        authorize=args.authorize, token_grace=args.token_grace,
        max_rooms_per_connection=args.max_rooms_per_connection,
        max_connections_per_user=args.max_connections_per_user,
        max_connections_per_ip=args.max_connections_per_ip,
        api_key=args.api_key or os.environ.get("WSKIT_API_KEY") or None,
        backplane_key=args.backplane_key or os.environ.get("WSKIT_BACKPLANE_KEY") or None,
        metrics=not args.no_metrics, **extra,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wskit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"wskit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per log line (for log collectors)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one wskit server")
    p.add_argument("--framework", choices=FRAMEWORKS, default="aiohttp")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    _add_server_options(p)

    p = sub.add_parser("token", help="print a token for USER (last line)")
    p.add_argument("user")
    p.add_argument("--secret")
    p.add_argument("--ttl", type=_positive, default=3600.0, metavar="SECONDS")
    p.add_argument("--room", action="append", default=None, metavar="PATTERN=MODE",
                   help="grant for --authorize claims, e.g. lobby=rw or 'team-*=r' (repeatable)")
    p.add_argument("--direct", action="store_true",
                   help="may send direct messages to anyone (--authorize claims)")

    p = sub.add_parser("fakeredis", help="run an in-memory fake Redis over TCP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6390, help="0 picks a free port (default 6390)")

    p = sub.add_parser("demo", help="two instances (aiohttp + FastAPI) sharing one backplane")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000,
                   help="first instance's port; the second uses PORT+1 (0: any free ports)")
    _add_server_options(p)

    p = sub.add_parser("student-copies",
                       help="write the student edition: notebooks without their solution "
                            "cells or last hints, outputs cleared")
    p.add_argument("source", nargs="?", default="notebooks", help="folder of notebooks")
    p.add_argument("--out", default=None, help="default: SOURCE/student")

    p = sub.add_parser("grade", help="grade collected notebooks in sandboxes: a table, CSV, "
                       "JSON, feedback pages")
    from .course.grading import add_arguments
    add_arguments(p)

    p = sub.add_parser("course-html", help="execute the notebooks, write them as static HTML "
                                           "(--edition student: from the student copies)")
    from .course.html import add_arguments as add_course_arguments
    add_course_arguments(p)

    p = sub.add_parser("asyncapi", help="write the AsyncAPI 3.0 document of the WebSocket "
                                        "protocol (JSON)")
    p.add_argument("--out", default="-", help="a file, or - for standard output (default)")
    p.add_argument("--url", default="ws://localhost:8765/ws",
                   help="the server the document names (default ws://localhost:8765/ws)")

    p = sub.add_parser("bench", help="benchmarks (see docs/benchmarks.md)")
    p.add_argument("suite", nargs="?", choices=("fanout", "heartbeat", "held", "cluster", "curves"),
                   default="fanout")
    p.add_argument("--quick", action="store_true", help="a short run, about a minute")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--sizes", default=None, help="comma-separated receiver counts")
    p.add_argument("--targets", default=None,
                   help="comma-separated fanout targets (the raw floor is always measured)")
    p.add_argument("--free", action="store_true",
                   help="fanout throughput free-running: every post sent at once, kernel "
                        "socket buffers (default: at most 32 in flight, 64 KiB buffers)")
    p.add_argument("--messages", type=int, default=None, metavar="M",
                   help="posts per fanout throughput run (default: by size)")
    p.add_argument("--loop", choices=LOOPS, default="asyncio",
                   help="the target servers' event loop (the load generator stays on asyncio)")
    p.add_argument("--connections", type=int, default=None, metavar="N",
                   help="held: connections per server (default 2000; --quick 500)")
    p.add_argument("--hold", type=float, default=None, metavar="S",
                   help="held: seconds held idle (default 10; --quick 3)")
    p.add_argument("--default-heartbeat", action="store_true",
                   help="held: wskit's default heartbeat (20 s / 20 s) instead of 0.5 s / 1 s")
    p.add_argument("--deflate", action="store_true",
                   help="every load-generator client offers permessage-deflate, as browsers do "
                        "(fanout, held)")
    p.add_argument("--pin", action="store_true",
                   help="fanout: the load generator on half the CPUs, the servers on the other "
                        "half (steadier ratios on a small machine)")
    p.add_argument("--plot", default=None, metavar="PNG", help="curves: also draw them here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_format == "json":
        from .server.jsonlog import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    try:
        if args.command == "token":
            print(issue_token(args.user, args.secret, args.ttl, **_grant_claims(args)), flush=True)
            return 0
        if args.command == "fakeredis":
            return _fakeredis(args)
        if args.command == "course-html":
            from .course.html import run as build_course

            return build_course(args)
        if args.command == "grade":
            from .course.grading import run as grade

            return grade(args)
        if args.command == "student-copies":
            from pathlib import Path

            from .course.teaching import write_student_copies

            source = Path(args.source)
            for path in write_student_copies(source, Path(args.out or source / "student")):
                print(path, flush=True)
            return 0
        if args.command == "asyncapi":
            from .server.asyncapi import dumps

            text = dumps(args.url)
            if args.out == "-":
                sys.stdout.write(text)
            else:
                with open(args.out, "w", encoding="utf-8") as out:
                    out.write(text)
                print(args.out, flush=True)
            return 0
        if args.command == "bench":
            from .bench import main as bench_main

            return bench_main(args)
        runner = _serve if args.command == "serve" else _demo
        with contextlib.suppress(KeyboardInterrupt):
            run(runner(args), loop=args.loop)
        return 0
    except WskitError as exc:
        print(f"wskit: error: {exc}", file=sys.stderr, flush=True)
        return 1


def _grant_claims(args: argparse.Namespace) -> dict[str, Any]:
    """The ``rooms`` and ``direct`` claims of ``token --room P=M --direct``."""
    claims: dict[str, Any] = {}
    if args.room:
        rooms = {}
        for item in args.room:
            pattern, _, mode = item.rpartition("=")
            if not pattern or mode not in ("r", "rw"):
                raise WskitError(f"--room takes PATTERN=r or PATTERN=rw, got {item!r}")
            rooms[pattern] = mode
        claims["rooms"] = rooms
    if args.direct:
        claims["direct"] = True
    return claims


async def _serve(args: argparse.Namespace) -> None:
    handle = await serve(args.framework, host=args.host, port=args.port, name="cli",
                         **_settings(args, instance_name=args.framework))
    print(handle.url, flush=True)
    await handle.serve_forever()


async def _demo(args: argparse.Namespace) -> None:
    ports = (args.port, args.port + 1) if args.port else (0, 0)
    handles = []
    try:
        for framework, port in zip(FRAMEWORKS, ports, strict=True):
            handles.append(await serve(framework, host=args.host, port=port, name=f"demo-{framework}",
                                       **_settings(args, instance_name=framework)))
        for h in handles:
            print(f"{h.framework:8s} {h.http_url}", flush=True)
        if not args.dev_tokens:
            print("get a token with: python -m wskit token NAME  (or run with --dev-tokens)",
                  flush=True)

        async def stop_all() -> None:
            for h in handles:
                await h.stop()

        stop_on_signals(stop_all)
        await asyncio.gather(*(h.serve_forever(signals=False) for h in handles))
    finally:
        for h in handles:
            await h.stop()


def _fakeredis(args: argparse.Namespace) -> int:
    import threading

    from .backplane.fakeserver import FakeRedisServer

    server = FakeRedisServer(args.host, args.port).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
