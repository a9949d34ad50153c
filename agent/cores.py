"""How many CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

A container or a CI runner often shows every host core in `os.cpu_count()` while its cgroup
allows only a few; a thread count taken from the load average instead depends on whatever
happened to run at that instant and then holds for the whole run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Cores:
    usable: int  # whole cores this process may run on (>= 1)
    source: str  # what limited them: "affinity", "cgroup quota" or "cpu_count"

    def __str__(self) -> str:
        return f"{self.usable} core(s) ({self.source})"


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores (cgroup v2 `cpu.max`, else v1 cfs files), None when unlimited."""
    try:
        fields = (root / "cpu.max").read_text().split()
    except OSError:
        fields = []
    if fields:
        try:
            return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
        except (ValueError, IndexError, ZeroDivisionError):
            return None
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cores(root: Path = CGROUP_ROOT) -> Cores:
    affinity = _affinity()
    cores, source = (affinity, "affinity") if affinity else (os.cpu_count() or 1, "cpu_count")
    quota = cgroup_quota(root)
    if quota is not None and math.ceil(quota) < cores:
        # a fractional quota (1.5 cores) still runs a second thread part of the time
        cores, source = max(1, math.ceil(quota)), "cgroup quota"
    return Cores(max(1, cores), source)
