"""A fake Redis over TCP, so separate processes (or the seed's code, which takes
a ``redis://`` URL) can share one without installing Redis.

``python -m wskit fakeredis`` runs one; lessons start one in-process and stop
it to show what a Redis outage does. Built on ``fakeredis.TcpFakeServer``.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["FakeRedisServer"]


def _server_class() -> type:
    from fakeredis import TcpFakeServer

    class TrackingServer(TcpFakeServer):
        """Remembers client sockets, so that stopping drops them like a dying Redis."""

        daemon_threads = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.open_requests: set[socket.socket] = set()
            self.requests_lock = threading.Lock()
            super().__init__(*args, **kwargs)

        def process_request(self, request: Any, client_address: Any) -> None:
            with self.requests_lock:
                self.open_requests.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request: Any) -> None:
            with self.requests_lock:
                self.open_requests.discard(request)
            super().shutdown_request(request)

    return TrackingServer


class FakeRedisServer:
    """A fakeredis server on ``host:port`` (0: a free port), in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeRedisServer:
        """Listen (again, on the same port after :meth:`stop`: a restarted Redis)."""
        if self._server is not None:
            return self
        server = _server_class()((self.host, self.port), server_type="redis")
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="wskit-fakeredis",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every client connection; the data is forgotten."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.requests_lock:
            requests = list(server.open_requests)
        for request in requests:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeRedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FakeRedisServer {self.url} {'running' if self.running else 'stopped'}>"
