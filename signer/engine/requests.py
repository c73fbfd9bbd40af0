"""What the engine is asked to sign, and how one request is signed (in a worker or inline)."""

from __future__ import annotations

from typing import NamedTuple

from signer.core import (
    DEFAULT_EXPIRE,
    PRIVILEGE_ALL,
    IssuedToken,
    SignerError,
    V1Signer,
    V2Signer,
)
from signer.core.privilege import sign_privatemapkey
from signer.engine.errors import UnknownApp

Signers = dict[int, V1Signer | V2Signer]
WireResult = tuple[str, int, int, int, str] | SignerError
"""What crosses the process boundary: (usersig, issued_at, expire, token_version, key_version)
or the error. Plain tuples, because they pickle much faster than dataclasses or named
tuples (see docs/PERFORMANCE.md)."""


class SignRequest(NamedTuple):
    """One token to sign. Give ``room_id`` or ``room_str`` for a TRTC PrivateMapKey."""

    sdkappid: int
    userid: str
    expire: int = DEFAULT_EXPIRE
    userbuf: bytes | None = None
    issued_at: int | None = None
    room_id: int | None = None
    room_str: str | None = None
    privilege: int = PRIVILEGE_ALL


def sign_one(signers: Signers, request: SignRequest) -> IssuedToken | SignerError:
    """Sign ``request`` with the app's signer; a SignerError is returned, not raised."""
    try:
        signer = signers.get(request.sdkappid)
        if signer is None:
            raise UnknownApp(request.sdkappid)
        if request.room_id is None and request.room_str is None:
            token = signer.sign(request.userid, request.expire, request.userbuf, request.issued_at)
        else:
            token = sign_privatemapkey(
                signer,
                request.userid,
                room_id=request.room_id,
                room_str=request.room_str,
                privilege=request.privilege,
                expire=request.expire,
                issued_at=request.issued_at,
            )
    except SignerError as exc:
        return exc
    return token


def to_wire(outcome: IssuedToken | SignerError) -> WireResult:
    if isinstance(outcome, SignerError):
        return outcome
    token = outcome
    return token.usersig, token.issued_at, token.expire, token.token_version, token.key_version


def from_wire(request: SignRequest, result: WireResult) -> IssuedToken | SignerError:
    if isinstance(result, SignerError):
        return result
    usersig, issued_at, expire, token_version, key_version = result
    return IssuedToken(
        usersig,
        request.userid,
        request.sdkappid,
        issued_at,
        expire,
        token_version,  # type: ignore[arg-type]
        key_version,
    )
