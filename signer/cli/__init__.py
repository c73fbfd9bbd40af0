"""The ``signer`` command line: thin wrappers that read inputs and call the core."""

from signer.cli.main import cli, main

__all__ = ["cli", "main"]
