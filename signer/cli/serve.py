"""``signer serve``: the HTTP service."""

from __future__ import annotations

import os
from pathlib import Path

import click

from signer.cli.inputs import BadInput
from signer.config import ConfigError
from signer.config.loader import cli_command


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SIGNER_CONFIG",
    help="TOML configuration file (env: SIGNER_CONFIG). Without one: dev mode.",
)
@click.option("--host", help="Bind address (overrides the configuration).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (overrides the configuration).")
def serve(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Run the HTTP service. With no configuration at all it starts in dev mode on
    127.0.0.1:8080 with fresh keys, no auth and an in-memory cache, and says so."""
    from signer.service.main import run  # keeps the other commands' start-up light

    if config_path is None and not any(name.upper() == "SIGNER_APPS" for name in os.environ):
        _say_how_to_run_the_cli()
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        run(config_path, overrides)
    except ConfigError as exc:
        raise BadInput("configuration rejected: " + "; ".join(exc.problems)) from None
    except OSError as exc:  # the bind address: in use, not ours, or not an address here
        raise BadInput(f"cannot listen on the configured address: {exc}") from None


def _say_how_to_run_the_cli() -> None:
    """Dev mode's banner shows CLI commands to try. After ``scripts/serve`` ``signer`` is in
    .venv/bin, not on PATH: then say once which command does work, as it is to be typed."""
    command = cli_command()
    if command != "signer":
        click.echo(
            f"signer: `signer` is not on PATH here; run the command line as {command} "
            f"(e.g. {command} verify --public-key <keys_dir>/public_key ...)",
            err=True,
        )
