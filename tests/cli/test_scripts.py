"""scripts/bootstrap.sh, what `bash scripts/serve` and `.ci/run` run first: quiet when all
goes well, loud and non-zero when installing fails, and its comments name real scripts.

pip is stood in for by a fake venv whose python prints what pip and setuptools print (the
boxed "Editable installation" warning of an editable install), so nothing is installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"

SETUPTOOLS_BOX = """\
  /tmp/pip-build-env/overlay/setuptools/command/editable_wheel.py:354: BuildBackendWarning: \
Editable installation.
  !!
          ********************************************************************************
          Please be careful with folders in your working directory with the same
          name as your package as they may take precedence during imports.
          ********************************************************************************
  !!
"""

FAKE_PYTHON = """\
#!/bin/sh
case "$*" in
    *"pip install"*)
        cat "$FAKE_PIP_OUTPUT" >&2
        exit "$FAKE_PIP_STATUS" ;;
esac
exit 0
"""


def _bootstrap(tmp_path: Path, pip_status: int) -> subprocess.CompletedProcess[str]:
    """Source bootstrap.sh and run it as scripts/serve does, with a fake venv's pip."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    (tmp_path / "pip-output").write_text(SETUPTOOLS_BOX)
    env = {
        **os.environ,
        "SIGNER_VENV": str(venv),
        "FAKE_PIP_OUTPUT": str(tmp_path / "pip-output"),
        "FAKE_PIP_STATUS": str(pip_status),
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{BOOTSTRAP}"; bootstrap ""; echo done'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_successful_install_hides_pips_warnings(tmp_path: Path) -> None:
    """When pip succeeds, bootstrap prints one line saying what it installs and nothing of
    pip's or setuptools' output, and marks the venv installed.

    Catches: setuptools' warning box as the first thing `bash scripts/serve` shows a new
    user."""
    result = _bootstrap(tmp_path, pip_status=0)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert "Editable installation" not in result.stderr and "!!" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bootstrap: installing")
    assert (tmp_path / "venv" / ".signer-installed").exists()
    assert not list(tmp_path.glob("signer-bootstrap.*"))  # its log file is removed


def test_a_failed_install_shows_pips_output_and_stops(tmp_path: Path) -> None:
    """When pip fails, bootstrap shows everything pip said, says it failed and returns
    non-zero, so scripts/serve stops there instead of starting a half-installed signer.

    Catches: a quiet bootstrap that also swallows the failure (or its explanation)."""
    result = _bootstrap(tmp_path, pip_status=1)
    assert result.returncode != 0 and "done" not in result.stdout
    assert SETUPTOOLS_BOX in result.stderr
    assert "failed" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "venv" / ".signer-installed").exists()


def test_comments_name_only_scripts_that_exist() -> None:
    """Every script bootstrap.sh's comments mention (scripts/..., .ci/...) is in the repo.

    Catches: the header naming a scripts/demo that does not exist."""
    comments = "\n".join(
        line for line in BOOTSTRAP.read_text().splitlines() if line.lstrip().startswith("#")
    )
    named = set(re.findall(r"(?:scripts|\.ci)/[\w.-]+", comments))
    assert {"scripts/serve", ".ci/run"} <= named
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
