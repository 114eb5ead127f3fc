"""A throwaway Redis Cluster on this machine, for notebooks, tests and benchmarks.

    with LocalCluster(masters=3, replicas=1) as cluster:
        url = cluster.url            # redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...
        cluster.kill(cluster.primary_of("wskit:{room:lobby}"))   # SIGKILL a master
        cluster.wait_ok()            # its replica took over

Every node is a ``redis-server --cluster-enabled yes`` on a free port of
127.0.0.1 (below the ephemeral range, with its bus port: :mod:`wskit.devtools.localredis`
says why), with nothing saved to disk, in a temporary directory removed on
:meth:`stop`; ``redis-cli --cluster create`` joins them. A low
``cluster-node-timeout`` (1 s by default) makes failovers quick. Needs the
``redis-server`` and ``redis-cli`` binaries (Debian: ``apt-get install
redis-server``); :func:`available` says whether they are here.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from .localredis import free_port, spawn, wait_answering

__all__ = ["LocalCluster", "available"]


def available() -> bool:
    """True if ``redis-server`` and ``redis-cli`` are installed."""
    return bool(shutil.which("redis-server") and shutil.which("redis-cli"))


class LocalCluster:
    """``masters`` primaries with ``replicas`` replicas each, on free ports."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000
                 ) -> None:
        if masters < 1 or (masters < 3 and replicas):
            raise ValueError("at least 1 master; replicas need at least 3 masters "
                             "(redis-cli --cluster create)")
        self.masters, self.replicas, self.node_timeout_ms = masters, replicas, node_timeout_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def ports(self) -> list[int]:
        return sorted(self.procs)

    @property
    def url(self) -> str:
        """Every live node, as a ``redis-cluster://`` URL."""
        live = [p for p, proc in sorted(self.procs.items()) if proc.poll() is None]
        return "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in live)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        if not available():
            raise RuntimeError("redis-server and redis-cli are needed for a local cluster")
        self._dir = tempfile.TemporaryDirectory(prefix="wskit-cluster-")
        try:
            deadline = time.monotonic() + timeout
            for _ in range(self.masters * (1 + self.replicas)):
                self._spawn(deadline)
            if self.masters >= 3:
                subprocess.run(
                    ["redis-cli", "--cluster", "create",
                     *(f"127.0.0.1:{p}" for p in self.ports),
                     "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                    check=True, capture_output=True, timeout=timeout)
            else:  # redis-cli wants 3 masters: 1 or 2 (for a scaling curve) by hand
                self._assign_by_hand()
            self.wait_ok(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _assign_by_hand(self) -> None:
        ports = self.ports
        step = 16384 // len(ports)
        for i, port in enumerate(ports):
            last = 16383 if i == len(ports) - 1 else (i + 1) * step - 1
            with self._client(port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
                for other in ports:
                    if other != port:
                        client.execute_command("CLUSTER", "MEET", "127.0.0.1", other)

    def _spawn(self, deadline: float) -> None:
        """One more node, listening; on a port another process took meanwhile, another."""
        assert self._dir is not None
        for attempt in range(5):
            port = free_port(also_free=10000)  # the cluster bus listens on port + 10000
            with tempfile.TemporaryFile() as log:
                proc = spawn(port, [
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    # the other shards keep serving while one has no master (the default,
                    # yes, stops the whole cluster until the failover is done)
                    "--cluster-require-full-coverage", "no"], self._dir.name, log)
                try:
                    wait_answering(proc, port, log, deadline)
                except OSError as exc:
                    if "in use" not in str(exc) or attempt == 4:
                        raise
                    continue
            self.procs[port] = proc
            return

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True,
                           socket_timeout=2.0, socket_connect_timeout=1.0)

    def nodes(self) -> list[dict[str, object]]:
        """``CLUSTER NODES`` as seen by a live node: port, role, slots, failed."""
        for port, proc in sorted(self.procs.items()):
            if proc.poll() is not None:
                continue
            try:
                with self._client(port) as client:
                    text = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            rows = []
            for line in str(text).splitlines():
                fields = line.split()
                flags = fields[2].split(",")
                rows.append({
                    "id": fields[0], "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                    "role": "master" if "master" in flags else "replica",
                    "failed": "fail" in flags or "fail?" in flags,
                    "slots": fields[8:]})
            return rows
        raise RuntimeError("no live node answers")

    def primaries(self) -> list[int]:
        """Ports of the live masters that own slots."""
        return sorted(n["port"] for n in self.nodes()  # type: ignore[misc]
                      if n["role"] == "master" and n["slots"] and not n["failed"])

    def primary_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot now."""
        for port in self.primaries():
            with self._client(port) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, *nodes in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return int(nodes[0][1])
        raise RuntimeError(f"no master owns {key!r}")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` with all slots served."""
        deadline = time.monotonic() + timeout
        while True:
            if self._all_ok():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not become ok")
            time.sleep(0.1)  # polling the cluster's own convergence

    def _all_ok(self) -> bool:
        """Every live node sees all slots served, and every replica has synced (a
        replica that never synced with its master would not take over from it)."""
        for port, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            try:
                with self._client(port) as client:
                    info = str(client.execute_command("CLUSTER", "INFO"))
                    replication = client.info("replication")
            except redis.RedisError:
                return False
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return False
            if replication.get("role") == "slave" and (
                    replication.get("master_link_status") != "up"
                    or self.procs.get(int(replication.get("master_port", 0))) is None):
                return False
        return True

    def kill(self, port: int) -> None:
        """SIGKILL one node (no goodbye: the others notice after the node timeout)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
