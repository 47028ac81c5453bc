"""CPU time of a server process and its children, from /proc, for the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (`ionflux serve` runs its relay and
    consumers in a child `ionflux worker`: its CPU is the server's too), from /proc."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")  # u/s time, reaped children
        pending += [int(c) for c in children]
    return total
