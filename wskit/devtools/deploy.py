"""Deployment pieces the course runs for real: nginx in front of instances, and an
idle-timeout relay that behaves like a load balancer.

:func:`nginx_config` is *the* configuration ``docs/deployment.md`` documents (a
test checks that the two agree), and :class:`LocalNginx` runs it on a free port
with TLS, in front of any number of wskit instances. Why each line is there:

* ``Upgrade``/``Connection``: hop-by-hop headers are not forwarded by a proxy
  (RFC 7230 section 6.1), so the handshake's upgrade request must be passed on
  explicitly, with HTTP/1.1 to the upstream (RFC 6455 section 4.1).
* ``proxy_read_timeout``: nginx closes a proxied connection on which the
  upstream sent nothing for this long (60 s by default). wskit pings every
  ``ping_interval`` (20 s), so keep the timeout comfortably above it.
* No ``ip_hash``/sticky sessions: with a backplane, any instance serves any
  user; a reconnect may land anywhere and recovers with ``since``.
* ``log_format`` with ``$uri``, not ``$request``: a browser cannot set headers on
  a WebSocket, so the token travels in the query string, and the default
  ``combined`` format would write every token into the access log.
* TLS ends at nginx (``wss://`` outside, ``ws://`` inside); the browser's
  ``Origin`` passes through unchanged, so ``--origin`` lists the *public* origin
  (or, with ``Host $http_host`` passed on, wskit's same-origin default holds).
* ``error_log ... crit``: nginx appends ``request: "GET /ws?token=..."`` to every
  error, warning and info line tied to a request, and the error log has no
  ``log_format``; below ``crit`` the error log would collect tokens.

:class:`IdleRelay` is a TCP relay that closes a connection idle for longer
than ``idle_timeout``, as cloud load balancers do (AWS ALB: 60 s by default):
notebook 09 shows a connection without heartbeats cut by it, and one with
heartbeats kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .ports import free_port

__all__ = ["nginx_config", "LocalNginx", "IdleRelay", "find_nginx"]

_TEMPLATE = """\
# wskit behind nginx: TLS outside, two instances inside, WebSocket upgrade passed on
worker_processes 1;
# crit: nginx ends error/warn/info lines with the request line, query string (the
# token) included, and error_log has no format to leave it out
error_log @prefix@/error.log crit;
pid @prefix@/nginx.pid;
events { worker_connections 1024; }

http {
    # Upgrade and Connection are hop-by-hop: pass the client's upgrade on explicitly
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }

    # $uri, not $request: the token is in the query string and must not be logged
    log_format wskit '$remote_addr [$time_local] "$request_method $uri" $status '
                     '$body_bytes_sent $request_time';
    access_log @prefix@/access.log wskit;

    # any instance serves any user (the backplane joins them): no ip_hash, no stickiness
    upstream wskit {
@upstreams@
    }

    server {
        listen 127.0.0.1:@port@ ssl;
        ssl_certificate     @cert@;
        ssl_certificate_key @key@;

        location /ws {
            proxy_pass http://wskit;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # the Host the browser sent, port included: wskit's default Origin check
            # (same-origin: Origin host equal to Host) then holds behind the proxy
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # closes a connection whose upstream sent nothing this long:
            # keep it well above wskit's ping interval (20 s)
            proxy_read_timeout @read_timeout@s;
            proxy_send_timeout @read_timeout@s;
        }

        location / {
            proxy_pass http://wskit;
            proxy_set_header Host $http_host;
        }
    }
}
"""


def nginx_config(port: int, upstreams: Sequence[str], cert: str, key: str, prefix: str,
                 read_timeout: int = 60) -> str:
    """The documented nginx configuration, filled in. ``upstreams``: ``host:port`` each."""
    servers = "\n".join(f"        server {u};" for u in upstreams)
    return (_TEMPLATE.replace("@upstreams@", servers).replace("@port@", str(port))
            .replace("@cert@", cert).replace("@key@", key).replace("@prefix@", prefix)
            .replace("@read_timeout@", str(read_timeout)))


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


class LocalNginx:
    """nginx with the documented config and a throwaway certificate, on a free port.

    ``ca`` (a :class:`trustme.CA`) signed the certificate: ``ca.configure_trust(ctx)``
    makes a client trust it. Stopped (and its files removed) by :meth:`stop`.
    """

    def __init__(self, upstreams: Sequence[str], read_timeout: int = 60) -> None:
        self.upstreams = list(upstreams)
        self.read_timeout = read_timeout
        self.port = 0
        self.prefix: Path | None = None
        self.ca: Any = None  # a trustme.CA once started (trustme is imported lazily)
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalNginx:
        import trustme

        binary = find_nginx()
        if binary is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
        self._tmp = tempfile.TemporaryDirectory(prefix="wskit-nginx-")
        self.prefix = Path(self._tmp.name)
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.prefix / "server.pem"))
        self.port = free_port()  # nginx is given its port: one no client can take
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_config(self.port, self.upstreams, str(self.prefix / "server.pem"),
                                     str(self.prefix / "server.pem"), str(self.prefix),
                                     self.read_timeout), encoding="utf-8")
        self._proc = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self.stop()
                raise RuntimeError(f"nginx exited: {err.strip()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port),
                                                                          timeout=0.2):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nginx did not listen on {self.port} within {timeout}s")
            time.sleep(0.05)

    def access_log(self) -> str:
        assert self.prefix is not None
        path = self.prefix / "access.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def error_log(self) -> str:
        assert self.prefix is not None
        path = self.prefix / "error.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()  # nginx: fast shutdown on SIGTERM
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalNginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IdleRelay:
    """A TCP relay to ``target`` (host, port) that closes any connection on which
    nothing passed, either way, for ``idle_timeout`` seconds (None: never): a load
    balancer's idle timeout in miniature. ``closed_idle`` counts the connections it
    cut. ``cut()`` pulls the cable (every connection dropped, new ones refused) and
    ``mend()`` plugs it back: one instance's own network outage."""

    def __init__(self, target: tuple[str, int], idle_timeout: float | None) -> None:
        self.target = target
        self.idle_timeout = idle_timeout
        self.closed_idle = 0
        self.port = 0
        self.up = True
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    async def start(self) -> IdleRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        up_writer: asyncio.StreamWriter | None = None
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._transports.add(up_writer.transport)
            loop = asyncio.get_running_loop()
            last = [loop.time()]

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                while data := await src.read(65536):
                    last[0] = loop.time()
                    dst.write(data)
                    await dst.drain()

            pipes = [asyncio.ensure_future(pipe(reader, up_writer)),
                     asyncio.ensure_future(pipe(up_reader, writer))]
            try:
                while not any(p.done() for p in pipes):
                    left = (None if self.idle_timeout is None
                            else last[0] + self.idle_timeout - loop.time())
                    if left is not None and left <= 0:
                        self.closed_idle += 1
                        break
                    await asyncio.wait(pipes, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pipes:
                    p.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass  # the upstream refused, or a connection was reset: it ends here
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
                    self._transports.discard(w.transport)
            self._tasks.discard(task)  # type: ignore[arg-type]

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until :meth:`mend`."""
        self.up = False
        for transport in list(self._transports):
            transport.abort()

    def mend(self) -> None:
        self.up = True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # end every relayed connection; its handler then returns on its own
            # (cancelling a stream handler task makes asyncio report an error)
            for transport in list(self._transports):
                transport.abort()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
