"""deploy/systemd/signer.service: a unit systemd accepts, that reloads with SIGHUP and
stops by letting signer drain."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "signer.service"
INSTALLED = "/opt/signer/bin/signer"
DRAIN = 15 + 10  # [server] shutdown_timeout's default and the supervisor's margin


def service() -> dict[str, list[str]]:
    """[Service] as key -> every value given (systemd allows a key several times)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
    reason="no systemd-analyze (scripts/bootstrap.sh installs it for .ci/run)",
)
def test_systemd_analyze_verify_accepts_it_without_a_warning(tmp_path: Path) -> None:
    """``systemd-analyze verify`` (with ExecStart pointing at this checkout's signer, so
    the binary exists) prints nothing: no unknown key, no bad value, no missing program."""
    unit = tmp_path / "signer.service"
    unit.write_text(
        UNIT.read_text().replace(INSTALLED, str(Path(sys.executable).with_name("signer")))
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_it_runs_the_images_command_and_reloads_with_sighup() -> None:
    values = service()
    assert values["ExecStart"] == [f"{INSTALLED} serve --config /etc/signer/signer.toml"]
    assert values["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_stopping_lets_signer_drain() -> None:
    """SIGTERM goes to the main process alone (it stops its children itself) and the
    SIGKILL of whatever is left comes only after the drain could have finished."""
    values = service()
    assert values["KillMode"] == ["mixed"]
    assert float(values["TimeoutStopSec"][0]) > DRAIN


def test_it_runs_unprivileged_and_hardened() -> None:
    values = service()
    assert values["User"] == ["signer"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert values[key] == [value], key
