"""``signer keygen``: make a key pair in the layout of Tencent's keys.zip, or a v2 secret."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from click.core import ParameterSource

from signer.cli.inputs import BadInput
from signer.core import Curve, generate_private_key

SECRET_BYTES = 32
"""A v2 secret is this many random bytes, written as hex text (as Tencent's console shows
an app's key): the service and the CLI use the file's text as the HMAC key."""


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@click.command()
@click.option(
    "--kind",
    type=click.Choice(["v1", "v2"]),
    default="v1",
    show_default=True,
    help="v1: an EC key pair (ECDSA apps); v2: an HMAC secret (DIR/secret, v2 apps).",
)
@click.option(
    "--curve",
    type=click.Choice([c.value for c in Curve]),
    default=Curve.P256.value,
    show_default=True,
    help="Curve of the new key (v1 only).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write private_key and public_key (v1) or secret (v2) into "
    "(created if missing).",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen(kind: str, curve: str, out_dir: Path, force: bool) -> None:
    """Generate an EC key pair: DIR/private_key (PKCS#8, mode 0600) and DIR/public_key;
    or, with --kind v2, a secret of 32 random bytes as hex: DIR/secret (mode 0600)."""
    if kind == "v2":
        context = click.get_current_context()
        if context.get_parameter_source("curve") is ParameterSource.COMMANDLINE:
            raise click.UsageError("--curve is for v1 keys; a v2 secret has no curve")
        _secret(out_dir, force)
        return
    private_path, public_path = out_dir / "private_key", out_dir / "public_key"
    if not force and (private_path.exists() or public_path.exists()):
        raise BadInput(f"{out_dir} already holds a key; use --force to replace it")
    key = generate_private_key(Curve(curve))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_private(private_path, key.to_pem())
        public_path.write_bytes(key.public_key().to_pem())
    except OSError as exc:
        raise BadInput(f"cannot write keys to {out_dir}: {exc.strerror}") from None
    click.echo(f"wrote {private_path} and {public_path} ({curve})", err=True)


def _secret(out_dir: Path, force: bool) -> None:
    path = out_dir / "secret"
    if not force and path.exists():
        raise BadInput(f"{out_dir} already holds a secret; use --force to replace it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, (secrets.token_hex(SECRET_BYTES) + "\n").encode())
    except OSError as exc:
        raise BadInput(f"cannot write the secret to {out_dir}: {exc.strerror}") from None
    click.echo(f"wrote {path} (v2 secret)", err=True)
