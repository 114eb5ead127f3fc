"""Which ``Origin`` and ``Host`` headers a server answers: two browser attacks.

**Cross-site WebSocket hijacking.** A browser sends the victim's cookies and
lets any page open a WebSocket anywhere; the Same-Origin Policy does not apply to
WebSockets (RFC 6455 §10.2: the server must check ``Origin``). With no allow-list,
wskit accepts only its own pages (``Origin`` host equal to the ``Host`` header)
and clients that send no ``Origin`` (not browsers: they could forge any header,
and their token is what authenticates them). ``"*"`` in the list allows any.

**DNS rebinding.** A page on ``evil.example`` whose name is re-pointed at
127.0.0.1 reaches a loopback server as same-origin, with ``Host: evil.example``.
The plain HTTP routes (``/healthz``, ``/token``), and a browser's WebSocket
handshake under the default same-origin rule, are answered only for a ``Host`` that
is an IP literal (no name was resolved), ``localhost``, the host the server binds,
or a name allowed with ``--allowed-host`` (or, for the WebSocket, an ``--origin``
list, which then decides alone).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

__all__ = ["origin_allowed", "host_allowed", "split_host", "is_loopback"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def split_host(value: str) -> tuple[str, str | None]:
    """``("example.com", "8000")`` from ``"Example.COM:8000"``; IPv6 keeps its brackets off."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[1:end], value[end + 1:]
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


def _netloc(host: str, port: str | None, scheme: str) -> tuple[str, str | None]:
    host = host.rstrip(".")
    return host, None if port == _DEFAULT_PORTS.get(scheme) else port


def origin_allowed(origin: str | None, host: str | None,
                   allowed: Collection[str] | None) -> bool:
    """May a WebSocket handshake with this ``Origin`` (and ``Host``) be upgraded?"""
    if origin is None:
        return True
    if allowed is not None:
        return "*" in allowed or origin.rstrip("/").lower() in {
            a.rstrip("/").lower() for a in allowed}
    if not host:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file), or nonsense
    scheme = parts.scheme
    theirs = _netloc(*split_host(parts.netloc), scheme)
    ours = _netloc(*split_host(host), scheme)
    return theirs == ours


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host: str | None, names: Collection[str] = ()) -> bool:
    """May a plain HTTP request with this ``Host`` header be answered?"""
    if not host:
        return True  # HTTP/1.0 or a tool: no browser sends a request without Host
    name, _ = split_host(host)
    name = name.rstrip(".")
    return _is_ip(name) or name == "localhost" or name in names
