"""Fresh keys for a local deployment: a v1 (P-256) app key, a v2 secret and an API key."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_keys(directory: Path, python: str = sys.executable) -> dict[str, Path]:
    """``signer keygen`` (v1 and v2, run side by side) into ``directory/keys`` and a random
    API key in ``keys/caller`` (mode 0600): the paths of the v1 private and public key, the
    v2 secret and the API key file."""
    keys = directory / "keys"
    signer = [python, "-m", "signer", "keygen"]
    jobs = [
        subprocess.Popen(  # noqa: S603
            [*signer, *kind, "--out", str(keys / out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        for kind, out in (([], "v1"), (["--kind", "v2"], "v2"))
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=60)
        if job.returncode != 0:
            raise RuntimeError(f"signer keygen failed: {output.decode(errors='replace')}")
    caller = keys / "caller"
    caller.write_text(secrets.token_urlsafe(32) + "\n")
    caller.chmod(0o600)
    return {
        "v1_private": keys / "v1" / "private_key",
        "v1_public": keys / "v1" / "public_key",
        "v2_secret": keys / "v2" / "secret",
        "caller": caller,
    }
