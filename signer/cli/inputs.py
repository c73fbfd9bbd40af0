"""Reading keys, secrets and tokens for the CLI, from files or the environment.

Secrets never come from plain command-line arguments (those end up in shell history and
``ps``); a file path or an environment variable is required, and nothing read here is
ever echoed back.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.core import ParameterSource

from signer.core import (
    EcPrivateKey,
    EcPublicKey,
    HmacSecret,
    KeyLoadError,
    load_private_key,
    load_public_key,
)


class BadInput(click.ClickException):
    """An input (file, key, secret) is unusable: exit status 2, like a usage error."""

    exit_code = 2


MAX_INPUT_BYTES = 1 << 20
"""Key, secret and token files are small; refuse to slurp anything bigger."""


def read_small(path: str) -> bytes:
    """Contents of ``path`` (``-`` for stdin), refusing files over ``MAX_INPUT_BYTES``."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with Path(path).open("rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise BadInput(f"{path} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def _key_error(source: str, exc: KeyLoadError) -> BadInput:
    return BadInput(f"{source}: {exc.message}")


def private_key(path: str | None, pem: str | None) -> EcPrivateKey | None:
    """The EC private key from ``--private-key FILE`` or ``SIGNER_PRIVATE_KEY`` (PEM text)."""
    if path is None and pem is None:
        return None
    source = path if path is not None else "SIGNER_PRIVATE_KEY"
    data = read_small(path) if path is not None else (pem or "").encode()
    try:
        return load_private_key(data)
    except KeyLoadError as exc:
        raise _key_error(source, exc) from None


def public_key(path: str) -> EcPublicKey:
    try:
        return load_public_key(read_small(path))
    except KeyLoadError as exc:
        raise _key_error(path, exc) from None


def secret(path: str | None, value: str | None) -> HmacSecret | None:
    """The v2 secret from ``--secret-file FILE`` or ``SIGNER_SECRET``, whitespace trimmed.
    A PEM key there is refused: HMAC would happily sign with its text, and every token
    would then fail wherever the real secret verifies it."""
    if path is None and value is None:
        return None
    source = path if path is not None else "SIGNER_SECRET"
    data = read_small(path) if path is not None else (value or "").encode()
    if data.lstrip().startswith(b"-----BEGIN"):
        raise BadInput(
            f"{source}: this is a PEM key, not a v2 secret; give a v1 key with "
            "--private-key (or --public-key to verify)"
        )
    try:
        return HmacSecret.from_text(data)
    except KeyLoadError as exc:
        raise _key_error(source, exc) from None


def signing_key(
    key_path: str | None, key_pem: str | None, secret_path: str | None, secret_value: str | None
) -> EcPrivateKey | HmacSecret:
    """Exactly one of a private key (v1) or a secret (v2), wherever it came from."""
    _refuse_secret_arguments("key_pem", "secret_value")
    given_key = key_path is not None or key_pem is not None
    given_secret = secret_path is not None or secret_value is not None
    if given_key and given_secret:
        raise click.UsageError("give either a private key (v1) or a secret (v2), not both")
    key = private_key(key_path, key_pem) if given_key else secret(secret_path, secret_value)
    if key is None:
        raise click.UsageError(
            "no key: use --private-key FILE or --secret-file FILE "
            "(or set SIGNER_PRIVATE_KEY / SIGNER_SECRET)"
        )
    return key


def _refuse_secret_arguments(*names: str) -> None:
    """The hidden options that carry SIGNER_PRIVATE_KEY / SIGNER_SECRET exist only to read
    the environment; a secret typed as an argument would land in shell history and ps."""
    context = click.get_current_context(silent=True)
    if context is None:
        return
    for name in names:
        if context.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise click.UsageError(
                "secrets are not taken as arguments: use a file or SIGNER_SECRET / "
                "SIGNER_PRIVATE_KEY"
            )


def token(value: str | None, path: str | None) -> str:
    """The token from ``--token`` or ``--token-file`` (``-`` for stdin), whitespace trimmed."""
    if (value is None) == (path is None):
        raise click.UsageError("give exactly one of --token and --token-file")
    if value is not None:
        return value.strip()
    return read_small(path or "-").decode("utf-8", "replace").strip()


def userids_from_file(path: str) -> Iterator[str]:
    """One userid per line of ``path`` (``-`` for stdin), read lazily."""
    handle = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    with handle:
        for line in handle:
            yield line.rstrip("\r\n")


def generated_userids(prefix: str, count: int) -> Iterator[str]:
    """``<prefix>0`` .. ``<prefix><count - 1>``."""
    return (f"{prefix}{n}" for n in range(count))


def chunks_of(userids: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(userids, size)):
        yield chunk
