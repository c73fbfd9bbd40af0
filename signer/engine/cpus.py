"""How many CPUs this process may use: what "one per core" means for HTTP processes and
signing workers.

``os.cpu_count()`` counts the machine's cores, so a pod limited to 2 CPUs on a 64-core node
would start 64 HTTP processes, each with its own workers, and be throttled. The affinity
mask (taskset, cpusets) and a cgroup v2 CPU quota (``cpu.max``, what Kubernetes and systemd's
``CPUQuota=`` set) both lower the figure; the smaller wins."""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CPU_MAX) -> int:
    """The CPUs this process may use: its affinity mask, capped by the cgroup quota rounded
    up (1.5 CPUs allows 2 busy processes). At least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota(cpu_max)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cgroup_quota(cpu_max: Path) -> float | None:
    """CPUs allowed by ``cpu.max`` ("<quota> <period>" in µs, or "max <period>"), or None
    when there is no quota (or no cgroup v2 file to read)."""
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)
