"""A process's memory and CPU time, read from ``/proc`` (Linux): what the benchmarks
report of the server processes they start."""

from __future__ import annotations

import os

__all__ = ["cpu_seconds", "status_kb"]


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` size field in KiB: ``VmRSS`` now, ``VmHWM`` its peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
