"""The naive v1 app server's Python: Tencent's tls-sig-api 1.4 only runs with pyOpenSSL
24.2.1 and cryptography < 44, so bench/naive_app.py ``--mode v1`` runs from a venv of its
own, ``bench/.venv-naive-v1`` (git-ignored), made on first use with ``python3 -m venv`` and
pip (aiohttp and uvloop pinned to the versions of signer's venv, so both sides run the same
HTTP stack). If that fails, the stand-in ``v1-cryptography`` mode (Tencent's steps with the
cryptography package) is used and said so in capitals. Used by bench/storm.py and by
``loadtest --baseline-naive`` for a v1 app."""

# ruff: noqa: S603, S607  (fixed commands: python3 -m venv, pip, the venv's python)

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from deploy.local.keys import ROOT

PYTHON = sys.executable
NAIVE_VENV = ROOT / "bench" / ".venv-naive-v1"
V1_PINS = ["tls-sig-api==1.4", "pyOpenSSL==24.2.1", "cryptography<44"]


def naive_v1() -> tuple[str, str, str]:
    """(python, naive_app mode, what signs) for the naive v1 server: Tencent's tls-sig-api
    1.4 from bench/.venv-naive-v1 (made here if missing), else the cryptography stand-in."""
    python = NAIVE_VENV / "bin" / "python"
    probe = "import TLSSigAPI, OpenSSL, aiohttp, uvloop; OpenSSL.crypto.sign"

    def usable() -> bool:
        return (
            python.exists()
            and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
        )

    if not usable():
        pins = [*V1_PINS]
        for name in ("aiohttp", "uvloop"):  # the naive servers' HTTP stack = signer's
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        print(f"naive: creating {NAIVE_VENV} for Tencent's v1 library: {' '.join(pins)}")
        made = subprocess.run(
            ["python3", "-m", "venv", "--clear", str(NAIVE_VENV)], capture_output=True, text=True
        )
        if made.returncode == 0:
            pip = [str(NAIVE_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
            got = subprocess.run([*pip, *pins], capture_output=True, text=True)
            if got.returncode != 0:
                print(got.stderr[-2000:], file=sys.stderr)
    if usable():
        versions = subprocess.run(
            [
                python,
                "-c",
                "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
                "('tls-sig-api', 'pyOpenSSL', 'cryptography', 'aiohttp', 'uvloop')))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return str(python), "v1", f"Tencent tls-sig-api ({versions})"
    print(
        "\nnaive: WARNING: TENCENT'S tls-sig-api 1.4 COULD NOT BE INSTALLED. THE NAIVE v1 SERVER "
        "RUNS naive_app.py --mode v1-cryptography: TENCENT'S STEPS WITH THE cryptography "
        "PACKAGE, NOT TENCENT'S LIBRARY.\n",
        file=sys.stderr,
    )
    return PYTHON, "v1-cryptography", "NOT Tencent's library: its steps with cryptography"
