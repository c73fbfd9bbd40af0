"""``signer serve``: the HTTP service."""

from __future__ import annotations

from pathlib import Path

import click

from signer.cli.inputs import BadInput
from signer.config import ConfigError


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
