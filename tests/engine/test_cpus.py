""" "One per core" counts the CPUs this process may use, not the machine's: a pod limited
to 2 CPUs on a 64-core node must not start 64 HTTP processes or signing workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from signer.engine.cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),  # no quota
        ("100000 100000\n", 1),
        ("150000 100000\n", min(AFFINITY, 2)),  # 1.5 CPUs: 2 processes may be busy
        ("50000 100000\n", 1),  # half a CPU: still one
        ("garbage\n", AFFINITY),
    ],
)
def test_the_cgroup_quota_caps_the_affinity_mask(
    tmp_path: Path, cpu_max: str, expected: int
) -> None:
    """Catches: os.cpu_count() (the node's cores) taken as the process's CPUs."""
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert usable_cpus(path) == expected


def test_without_a_cgroup_file_the_affinity_mask_counts(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path / "missing") == AFFINITY


def test_the_affinity_mask_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """taskset -c 0 on a many-core machine: one."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus(tmp_path / "missing") == 1
