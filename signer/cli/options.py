"""Click options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from signer.core import DEFAULT_EXPIRE, UINT32_MAX

F = TypeVar("F", bound=Callable[..., Any])


def _apply(func: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def signing_key_options(func: F) -> F:
    """``--private-key`` (v1) / ``--secret-file`` (v2), and their environment variables.

    The hidden ``--private-key-pem`` / ``--secret-value`` only carry ``SIGNER_PRIVATE_KEY``
    / ``SIGNER_SECRET``; :func:`signer.cli.inputs.signing_key` refuses them as arguments.
    """
    return _apply(
        func,
        [
            click.option(
                "--private-key",
                "key_path",
                type=click.Path(dir_okay=False),
                envvar="SIGNER_PRIVATE_KEY_FILE",
                help="EC private key PEM (v1). Env: SIGNER_PRIVATE_KEY_FILE, or the PEM "
                "itself in SIGNER_PRIVATE_KEY.",
            ),
            click.option("--private-key-pem", "key_pem", envvar="SIGNER_PRIVATE_KEY", hidden=True),
            click.option(
                "--secret-file",
                "secret_path",
                type=click.Path(dir_okay=False),
                envvar="SIGNER_SECRET_FILE",
                help="File holding the HMAC secret (v2). Env: SIGNER_SECRET_FILE, or the "
                "secret itself in SIGNER_SECRET.",
            ),
            click.option("--secret-value", "secret_value", envvar="SIGNER_SECRET", hidden=True),
        ],
    )


def app_options(func: F) -> F:
    """``--sdkappid``, ``--expire`` and ``--max-userid-bytes``."""
    return _apply(
        func,
        [
            click.option("--sdkappid", type=click.IntRange(1, UINT32_MAX), required=True),
            click.option(
                "--expire",
                type=click.IntRange(1, UINT32_MAX),
                default=DEFAULT_EXPIRE,
                show_default=True,
                help="Lifetime in seconds.",
            ),
            click.option(
                "--max-userid-bytes",
                type=click.IntRange(1, 1024),
                default=32,
                show_default=True,
                help="Userid policy: the longest userid accepted, in UTF-8 bytes.",
            ),
        ],
    )
