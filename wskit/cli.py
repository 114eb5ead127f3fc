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
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import __version__
from .exceptions import WskitError
from .runner.serve import FRAMEWORKS, LOOPS, run, serve
from .security.tokens import issue_token

__all__ = ["main"]


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--secret", help="token secret (default: $WSKIT_SECRET, else a dev secret)")
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
                   help="allowed Origin (repeatable); default: any")
    p.add_argument("--dev-tokens", action="store_true",
                   help="enable GET /token?user=NAME (development only: anyone gets a token)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="turn the HTTP API (/api/...) on, for 'Authorization: Bearer KEY' "
                        "(default: $WSKIT_API_KEY; unset: the API is off)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve GET /metrics")
    p.add_argument("--loop", choices=LOOPS, default="asyncio",
                   help="event loop (uvloop: pip install 'wskit[fast]'; default asyncio)")


def _settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    ping = None if args.no_ping else args.ping_interval
    return dict(
        secret=args.secret, backplane=args.redis,
        ping_interval=ping, ping_timeout=None if args.no_ping else args.ping_timeout,
        protocol_ping_interval=args.protocol_ping_interval,
        protocol_ping_timeout=args.protocol_ping_timeout,
        max_message_size=args.max_message_size,
        rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        history_size=args.history_size, history_ttl=args.history_ttl,
        drain_timeout=args.drain_timeout, namespace=args.namespace,
        presence_ttl=args.presence_ttl, presence_events=args.presence_events,
        origins=tuple(args.origin) if args.origin else None,
        dev_tokens=args.dev_tokens, **extra,
        api_key=args.api_key or os.environ.get("WSKIT_API_KEY") or None,
        metrics=not args.no_metrics,
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

    p = sub.add_parser("fakeredis", help="run an in-memory fake Redis over TCP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6390, help="0 picks a free port (default 6390)")

    p = sub.add_parser("demo", help="two instances (aiohttp + FastAPI) sharing one backplane")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000,
                   help="first instance's port; the second uses PORT+1 (0: any free ports)")
    _add_server_options(p)

    p = sub.add_parser("student-copies",
                       help="write notebooks without their solution cells, outputs cleared")
    p.add_argument("source", nargs="?", default="notebooks", help="folder of notebooks")
    p.add_argument("--out", default=None, help="default: SOURCE/student")

    p = sub.add_parser("grade", help="grade collected notebooks: a table, optionally a CSV")
    from .course.grading import add_arguments
    add_arguments(p)

    p = sub.add_parser("course-html", help="execute the notebooks, write them as static HTML")
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
            print(issue_token(args.user, args.secret, args.ttl), flush=True)
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


async def _serve(args: argparse.Namespace) -> None:
    handle = await serve(args.framework, host=args.host, port=args.port, name="cli",
                         **_settings(args, instance_name=args.framework))
    print(handle.url, flush=True)
    _stop_on_signals(handle.stop)
    await handle.serve_forever()


_stopping: set[asyncio.Task[None]] = set()


def _stop_on_signals(stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """SIGTERM (a deploy) and Ctrl-C drain: 1012 to every client, then exit 0.

    Ctrl-C is handled on the loop too: left to Python 3.10's asyncio.run, the
    KeyboardInterrupt lands wherever the loop happens to be, possibly inside a
    library's ``async with lock``, and the shutdown then waits on that lock forever.
    A second Ctrl-C interrupts at once.
    """
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if sig == signal.SIGINT:
            loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C: KeyboardInterrupt
        _stopping.add(loop.create_task(stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
            loop.add_signal_handler(sig, on_signal, sig)


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

        _stop_on_signals(stop_all)
        await asyncio.gather(*(h.serve_forever() for h in handles))
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
