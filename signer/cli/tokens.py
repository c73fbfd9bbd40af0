"""``signer sign``, ``privatemapkey``, ``verify`` and ``decode``: the console's key tester,
offline."""

from __future__ import annotations

import binascii
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from signer.cli import inputs
from signer.cli.options import app_options, signing_key_options
from signer.core import (
    DEFAULT_POLICY,
    PRIVILEGE_ALL,
    UINT32_MAX,
    EcPrivateKey,
    UserIdPolicy,
    VerificationError,
    make_signer,
    sign_privatemapkey,
)
from signer.core import decode as decode_token
from signer.core import verify as verify_token
from signer.core.envelope import BigInt

F = TypeVar("F", bound=Callable[..., Any])
_UINT32 = click.IntRange(0, UINT32_MAX)


def _signing_options(func: F) -> F:
    func = click.option(
        "--issued-at", type=_UINT32, help="Issue time (unix seconds); default now."
    )(func)
    func = signing_key_options(func)
    func = click.option("--userid", required=True, help="The user the token is for.")(func)
    return app_options(func)


@click.command()
@_signing_options
@click.option("--userbuf-b64", help="Opaque userbuf to embed, as standard base64.")
def sign(
    sdkappid: int,
    userid: str,
    key_path: str | None,
    key_pem: str | None,
    secret_path: str | None,
    secret_value: str | None,
    expire: int,
    issued_at: int | None,
    max_userid_bytes: int,
    userbuf_b64: str | None,
) -> None:
    """Sign a UserSig (v1 with --private-key, v2 with --secret-file); print it alone."""
    key = inputs.signing_key(key_path, key_pem, secret_path, secret_value)
    signer = make_signer(sdkappid, key, UserIdPolicy(max_userid_bytes))
    userbuf = _userbuf(userbuf_b64)
    click.echo(signer.sign(userid, expire, userbuf, issued_at).usersig)


def _userbuf(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise click.BadParameter("not valid base64", param_hint="--userbuf-b64") from None


@click.command()
@_signing_options
@click.option("--room-id", type=click.IntRange(1, UINT32_MAX), help="Numeric TRTC room id.")
@click.option("--room-str", help="String TRTC room id (UTF-8, up to 64 bytes).")
@click.option(
    "--privilege",
    type=click.IntRange(0, PRIVILEGE_ALL),
    default=PRIVILEGE_ALL,
    show_default=True,
    help="Privilege bit map (255 grants every right).",
)
def privatemapkey(
    sdkappid: int,
    userid: str,
    key_path: str | None,
    key_pem: str | None,
    secret_path: str | None,
    secret_value: str | None,
    expire: int,
    issued_at: int | None,
    max_userid_bytes: int,
    room_id: int | None,
    room_str: str | None,
    privilege: int,
) -> None:
    """Sign a TRTC room privilege token (PrivateMapKey) for one room; print it alone."""
    if (room_id is None) == (room_str is None):
        raise click.UsageError("give exactly one of --room-id and --room-str")
    key = inputs.signing_key(key_path, key_pem, secret_path, secret_value)
    signer = make_signer(sdkappid, key, UserIdPolicy(max_userid_bytes))
    token = sign_privatemapkey(
        signer,
        userid,
        room_id=room_id,
        room_str=room_str,
        privilege=privilege,
        expire=expire,
        issued_at=issued_at,
    )
    click.echo(token.usersig)


def _token_options(func: F) -> F:
    func = click.option(
        "--token-file", type=click.Path(dir_okay=False, allow_dash=True), help="- for stdin."
    )(func)
    return click.option("--token", "token_value", help="The UserSig itself.")(func)


@click.command()
@click.option("--sdkappid", type=click.IntRange(0, UINT32_MAX), required=True)
@click.option("--userid", required=True)
@click.option("--public-key", "public_path", type=click.Path(dir_okay=False), help="v1 tokens.")
@click.option(
    "--private-key",
    "key_path",
    type=click.Path(dir_okay=False),
    help="v1 tokens: the public key is derived from it.",
)
@click.option("--secret-file", "secret_path", type=click.Path(dir_okay=False), help="v2 tokens.")
@_token_options
@click.option("--now", type=_UINT32, help="Judge expiry at this unix time instead of now.")
@click.option(
    "--max-userid-bytes",
    type=click.IntRange(1, 1024),
    default=DEFAULT_POLICY.max_bytes,
    show_default=True,
    help="Userid policy of the app: a token for a longer identifier fails with code 13.",
)
def verify(
    sdkappid: int,
    userid: str,
    public_path: str | None,
    key_path: str | None,
    secret_path: str | None,
    token_value: str | None,
    token_file: str | None,
    now: int | None,
    max_userid_bytes: int,
) -> None:
    """Verify a UserSig; print {"ok", "code", "reason", ...fields}. Exit 0 only if ok.

    The token's identifier must satisfy the userid policy (no control characters, at most
    --max-userid-bytes), as it must when signing; otherwise code 13."""
    given = [p for p in (public_path, key_path, secret_path) if p is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --public-key, --private-key, --secret-file")
    token = inputs.token(token_value, token_file)
    key: Any
    if public_path is not None:
        key = inputs.public_key(public_path)
    elif key_path is not None:
        private = inputs.private_key(key_path, None)
        assert isinstance(private, EcPrivateKey)
        key = private.public_key()
    else:
        key = inputs.secret(secret_path, None)
    try:
        result = verify_token(
            token,
            userid=userid,
            sdkappid=sdkappid,
            key=key,
            now=now,
            policy=UserIdPolicy(max_userid_bytes),
        )
    except VerificationError as exc:
        report: dict[str, Any] = {"ok": False, "code": exc.code, "reason": exc.reason}
        report["fields"] = _fields_or_none(token)
        _print_json(report)
        sys.exit(1)
    _print_json({"ok": True, "code": 0, "reason": "ok", **result.to_dict()})


def _fields_or_none(token: str) -> dict[str, Any] | None:
    try:
        return decode_token(token)
    except VerificationError:
        return None


@click.command()
@_token_options
def decode(token_value: str | None, token_file: str | None) -> None:
    """Print a token's JSON fields without checking its signature (for diagnosis)."""
    token = inputs.token(token_value, token_file)
    try:
        fields = decode_token(token)
    except VerificationError as exc:
        raise click.ClickException(f"code {exc.code}: {exc.reason}") from None
    _print_json(fields)


def _jsonable(value: object) -> object:
    """Decoded hostile tokens may hold values JSON writers refuse; show them as text."""
    if isinstance(value, BigInt):
        return value.literal
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def _print_json(obj: dict[str, Any]) -> None:
    # The stdlib writer, not orjson: it escapes lone surrogates and has a default hook for
    # the odd number types that diagnosis of a hostile token can surface.
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable)
    sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace") + b"\n")
    sys.stdout.flush()
