"""Verifying and decoding UserSigs, with Tencent's failure codes.

The checks run in a fixed order: the envelope (codes 1-4), the fields (7, 10), who the
token is for (13, 14), the signature (6, 8), the userbuf (15) and finally the clock (9).
Checking the signature before the clock means "expired" is only ever said of a token that
was genuinely issued with the given key, which is the more useful diagnosis.

Who the token is for (13) includes the userid policy: the token's identifier must be one
this service would sign. Tencent's own libraries sign any string, and one holding a newline
forges an extra line of the signed text, so a genuine signature does not make such a token
acceptable; nor is an expected userid that breaks the policy ever reported as a match.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from signer.core.envelope import BigInt, Fraction, parse_json, strict_b64decode, unwrap
from signer.core.errors import (
    FieldError,
    IdentifierMismatch,
    InvalidUserId,
    SdkAppIdMismatch,
    SignatureEncodingError,
    SignatureMismatch,
    TimeFieldError,
    TokenExpired,
    UserbufError,
)
from signer.core.keys import EcPublicKey, HmacSecret
from signer.core.limits import DEFAULT_LIMITS, UINT32_MAX, VerifyLimits
from signer.core.policy import DEFAULT_POLICY, UserIdPolicy
from signer.core.privilege import PrivilegeMap, decode_privilege_map
from signer.core.tokens import v1_signed_text, v2_signed_text

_DECIMAL = re.compile(r"[0-9]{1,10}")
_V1_REQUIRED = (
    "TLS.account_type",
    "TLS.identifier",
    "TLS.sdk_appid",
    "TLS.time",
    "TLS.expire_after",
    "TLS.sig",
)
_V1_OPTIONAL = ("TLS.appid_at_3rd", "TLS.userbuf", "TLS.version")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a good token says. ``userbuf`` is standard base64, as in the token."""

    token_version: Literal[1, 2]
    identifier: str
    sdkappid: int
    time: int
    expire: int
    userbuf: str | None = None
    privilege_map: PrivilegeMap | None = None

    @property
    def expires_at(self) -> int:
        return self.time + self.expire

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.token_version,
            "identifier": self.identifier,
            "sdkappid": self.sdkappid,
            "time": self.time,
            "expire": self.expire,
            "expires_at": self.expires_at,
            "userbuf": self.userbuf,
            "privilege_map": self.privilege_map.to_dict() if self.privilege_map else None,
        }


def decode(token: str, limits: VerifyLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The JSON fields of a token, checking nothing but that they can be read safely.

    For diagnosis ("what is in this token?"). Raises codes 1-4 as VerificationError.
    """
    return parse_json(unwrap(token, limits), limits)


def verify(
    token: str,
    *,
    userid: str,
    sdkappid: int,
    key: EcPublicKey | HmacSecret,
    now: int | None = None,
    limits: VerifyLimits = DEFAULT_LIMITS,
    policy: UserIdPolicy = DEFAULT_POLICY,
) -> VerifiedToken:
    """Check ``token`` was issued to ``userid`` of ``sdkappid`` by ``key`` and is still valid.

    ``key`` is the public key for v1 tokens and the shared secret for v2; which version a
    token is comes from its content (``TLS.ver == "2.0"``). ``now`` defaults to the clock.
    ``policy`` is the app's userid policy (its byte limit is per app): a token whose
    identifier breaks it fails with 13 even when correctly signed.
    Returns the decoded fields or raises a :class:`VerificationError` subclass whose
    ``code`` is Tencent's.
    """
    fields = decode(token, limits)
    if "TLS.ver" in fields:
        if not isinstance(fields["TLS.ver"], str):
            raise FieldError("TLS.ver must be a string")
        if fields["TLS.ver"] != "2.0":
            raise FieldError(f"unsupported TLS.ver {str(fields['TLS.ver'])[:20]!r}")
        result = _verify_v2(fields, userid, sdkappid, key, policy)
    else:
        result = _verify_v1(fields, userid, sdkappid, key, policy)
    current = int(time.time()) if now is None else now
    if result.expires_at < current:
        raise TokenExpired(
            f"token expired at {result.expires_at} (time {result.time} + expire "
            f"{result.expire}); now is {current}"
        )
    return result


def _verify_v1(
    fields: dict[str, Any],
    userid: str,
    sdkappid: int,
    key: EcPublicKey | HmacSecret,
    policy: UserIdPolicy,
) -> VerifiedToken:
    for name in _V1_REQUIRED + _V1_OPTIONAL:
        if name in fields and not isinstance(fields[name], str):
            raise FieldError(f"{name} must be a string in a version 1 token")
    missing = [name for name in _V1_REQUIRED if name not in fields]
    if missing:
        raise FieldError(f"required field {missing[0]} is missing")
    issued = _v1_number(fields, "TLS.time")
    expire = _v1_number(fields, "TLS.expire_after")
    _check_identity(fields["TLS.identifier"], userid, policy)
    token_appid = fields["TLS.sdk_appid"]
    if not _DECIMAL.fullmatch(token_appid) or int(token_appid) != sdkappid:
        raise SdkAppIdMismatch(f"token is for sdkappid {token_appid[:20]!r}, not {sdkappid}")
    signature = _signature_bytes(fields["TLS.sig"])
    if not isinstance(key, EcPublicKey):
        raise SignatureMismatch("token is version 1 (ECDSA) but an HMAC secret was given")
    if not key.verify(signature, v1_signed_text(fields)):
        raise SignatureMismatch(
            f"ECDSA signature does not verify with this {key.curve.value} public key"
        )
    userbuf, privilege = _userbuf(fields, userid, sdkappid)
    return VerifiedToken(1, userid, sdkappid, issued, expire, userbuf, privilege)


def _verify_v2(
    fields: dict[str, Any],
    userid: str,
    sdkappid: int,
    key: EcPublicKey | HmacSecret,
    policy: UserIdPolicy,
) -> VerifiedToken:
    kinds: dict[str, type] = {
        "TLS.identifier": str,
        "TLS.sdkappid": int,
        "TLS.time": int,
        "TLS.expire": int,
        "TLS.sig": str,
    }
    for name, kind in kinds.items():
        if name not in fields:
            raise FieldError(f"required field {name} is missing")
        value = fields[name]
        allowed = str if kind is str else int | Fraction  # fractions are reported as 10
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise FieldError(f"{name} must be a {'string' if kind is str else 'number'}")
    if "TLS.userbuf" in fields and not isinstance(fields["TLS.userbuf"], str):
        raise FieldError("TLS.userbuf must be a string")
    issued = _v2_number(fields, "TLS.time")
    expire = _v2_number(fields, "TLS.expire")
    _check_identity(fields["TLS.identifier"], userid, policy)
    token_appid = fields["TLS.sdkappid"]
    if isinstance(token_appid, BigInt | Fraction) or not 0 <= token_appid <= UINT32_MAX:
        raise FieldError("TLS.sdkappid is not an integer in the 32-bit range")
    if token_appid != sdkappid:
        raise SdkAppIdMismatch(f"token is for sdkappid {token_appid}, not {sdkappid}")
    signature = _signature_bytes(fields["TLS.sig"])
    if not isinstance(key, HmacSecret):
        raise SignatureMismatch("token is version 2 (HMAC) but an EC public key was given")
    text = v2_signed_text(userid, sdkappid, issued, expire, fields.get("TLS.userbuf"))
    if not hmac.compare_digest(key.digest(text), signature):
        raise SignatureMismatch("HMAC does not match: the token was signed with another secret")
    userbuf, privilege = _userbuf(fields, userid, sdkappid)
    return VerifiedToken(2, userid, sdkappid, issued, expire, userbuf, privilege)


def _v1_number(fields: dict[str, Any], name: str) -> int:
    text = fields[name]
    if not _DECIMAL.fullmatch(text) or int(text) > UINT32_MAX:
        raise TimeFieldError(f"{name} is not a decimal number in the 32-bit range")
    return int(text)


def _v2_number(fields: dict[str, Any], name: str) -> int:
    value = fields[name]
    if isinstance(value, BigInt | Fraction) or not 0 <= value <= UINT32_MAX:
        raise TimeFieldError(f"{name} is not an integer in the 32-bit range")
    return int(value)


def _check_identity(identifier: str, userid: str, policy: UserIdPolicy) -> None:
    """Code 13: the identifier is one ``policy`` allows, and it is the expected userid.

    When the two differ, an expected userid that itself breaks the policy is named as the
    cause: the caller asked for a userid no token of this app can be for.
    """
    try:
        policy.check(identifier)
    except InvalidUserId as exc:
        raise IdentifierMismatch(
            f"the token's identifier {identifier[:64]!r} breaks the userid policy "
            f"({exc.rule}): {exc.message}"
        ) from None
    if identifier != userid:
        try:
            policy.check(userid)
        except InvalidUserId as exc:
            raise IdentifierMismatch(
                f"the expected userid {userid[:64]!r} breaks the userid policy "
                f"({exc.rule}): {exc.message}"
            ) from None
        raise IdentifierMismatch(
            f"token is for identifier {identifier[:64]!r}, not {userid[:64]!r}"
        )


def _signature_bytes(text: str) -> bytes:
    signature = strict_b64decode(text)
    if signature is None or not signature:
        raise SignatureEncodingError("TLS.sig is not valid base64")
    return signature


def _userbuf(
    fields: dict[str, Any], userid: str, sdkappid: int
) -> tuple[str | None, PrivilegeMap | None]:
    text = fields.get("TLS.userbuf")
    if text is None:
        return None, None
    raw = strict_b64decode(text)
    if raw is None:
        raise UserbufError("TLS.userbuf is not valid base64")
    privilege = decode_privilege_map(raw)
    if privilege is not None and (privilege.userid, privilege.sdkappid) != (userid, sdkappid):
        raise UserbufError("room privilege userbuf was issued for another userid or sdkappid")
    return text, privilege


def summarize(fields: dict[str, Any]) -> dict[str, Any]:
    """Best-effort view of a token's fields in the names ``VerifiedToken.to_dict`` uses, for
    reporting alongside a failure. Values that are not what they should be are left out."""
    v2 = fields.get("TLS.ver") == "2.0"
    names = (
        ("sdkappid", "TLS.sdkappid" if v2 else "TLS.sdk_appid"),
        ("time", "TLS.time"),
        ("expire", "TLS.expire" if v2 else "TLS.expire_after"),
    )
    out: dict[str, Any] = {"version": 2 if v2 else 1}
    identifier = fields.get("TLS.identifier")
    if isinstance(identifier, str):
        out["identifier"] = identifier
    for name, key in names:
        value = fields.get(key)
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            value = int(value)
        if type(value) is int and 0 <= value <= UINT32_MAX:
            out[name] = value
    if "time" in out and "expire" in out:
        out["expires_at"] = out["time"] + out["expire"]
    userbuf = fields.get("TLS.userbuf")
    if isinstance(userbuf, str) and strict_b64decode(userbuf) is not None:
        out["userbuf"] = userbuf
    return out
