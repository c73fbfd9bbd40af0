"""The ``signer`` command group and its error handling.

Every failure ends as one line on stderr and a non-zero exit status: 1 when a token was
judged invalid, 2 for bad input (usage, keys, userids). Click's multi-line usage banners
are folded into that one line so scripts can rely on the format.
"""

from __future__ import annotations

import sys

import click

from signer import __version__
from signer.cli.bulk import bulk
from signer.cli.keys import keygen
from signer.cli.serve import serve
from signer.cli.tokens import decode, privatemapkey, sign, verify
from signer.cli.warm import warm
from signer.core import SignerError

EXIT_INVALID = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signer")
def cli() -> None:
    """Issue and verify Tencent Cloud IM / TRTC UserSig tokens.

    Keys and secrets are read from files (or SIGNER_PRIVATE_KEY / SIGNER_SECRET), never
    from arguments, and are never printed.
    """


cli.add_command(keygen)
cli.add_command(sign)
cli.add_command(privatemapkey)
cli.add_command(verify)
cli.add_command(decode)
cli.add_command(bulk)
cli.add_command(serve)
cli.add_command(warm)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group, turning every error into one stderr line."""
    try:
        status = cli.main(args=argv, prog_name="signer", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or EXIT_USAGE)
    except SignerError as exc:
        _fail(exc.message, EXIT_USAGE)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> None:
    click.echo(f"signer: error: {' '.join(message.split())}", err=True)
    sys.exit(status)
