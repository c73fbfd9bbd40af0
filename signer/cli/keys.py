"""``signer keygen``: make a key pair in the layout of Tencent's keys.zip."""

from __future__ import annotations

import os
from pathlib import Path

import click

from signer.cli.inputs import BadInput
from signer.core import Curve, generate_private_key


@click.command()
@click.option(
    "--curve",
    type=click.Choice([c.value for c in Curve]),
    default=Curve.P256.value,
    show_default=True,
    help="Curve of the new key.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write private_key and public_key into (created if missing).",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen(curve: str, out_dir: Path, force: bool) -> None:
    """Generate an EC key pair: DIR/private_key (PKCS#8, mode 0600) and DIR/public_key."""
    private_path, public_path = out_dir / "private_key", out_dir / "public_key"
    if not force and (private_path.exists() or public_path.exists()):
        raise BadInput(f"{out_dir} already holds a key; use --force to replace it")
    key = generate_private_key(Curve(curve))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.to_pem())
        public_path.write_bytes(key.public_key().to_pem())
    except OSError as exc:
        raise BadInput(f"cannot write keys to {out_dir}: {exc.strerror}") from None
    click.echo(f"wrote {private_path} and {public_path} ({curve})", err=True)
