"""Free ports for servers a test, notebook or benchmark starts on a *fixed* port.

A server that can listen on port 0 should (the kernel then picks, atomically). One
that needs its port chosen first (a ``redis-server``, nginx, a cluster node whose bus
port is ``port + 10000``, a server restarted on the same port) gets one *below* the
kernel's ephemeral range (``ip_local_port_range``, 32768-60999 on Linux), because
two flaky failures live inside that range:

* a port the kernel handed out as port 0 and that we then closed can be taken by any
  outgoing connection before the server binds it ("did not start" in CI once);
* while a server is down, a client reconnecting to a port in the ephemeral range can
  connect *to itself* (TCP simultaneous open: source port == destination port), and
  the restarted server then cannot bind its own port.

No outgoing connection gets a port below that range, so neither can happen there.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; macOS starts at 49152, so this is below it too


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(also_free: int = 0) -> int:
    """A port of 127.0.0.1 that nothing listens on, below the ephemeral range.

    ``also_free``: an offset whose port must be free too (a cluster node's bus port
    is ``port + 10000``), and below the range as well.
    """
    top = _ephemeral_low() - 1 - also_free
    bottom = max(1024, top // 3)
    if top <= bottom:  # an unusual port range: anywhere, then
        bottom, top = 1024, 65535 - also_free
    for _ in range(1000):
        port = random.randint(bottom, top)
        if _bindable(port) and (not also_free or _bindable(port + also_free)):
            return port
    raise RuntimeError("no free port found below the ephemeral range")
