"""Issuing UserSigs: version 1 (ECDSA) and version 2 (HMAC-SHA256), with optional userbuf.

A signer is built once per app (key plus sdkappid) and then signs many userids; everything
that does not depend on the userid is prepared up front. The signed text is assembled from
the same values that go into the JSON, so the two can never disagree.
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple, Protocol

from signer.core.envelope import b64encode, pack
from signer.core.errors import InvalidArgument
from signer.core.keys import EcPrivateKey, HmacSecret
from signer.core.limits import DEFAULT_EXPIRE, MAX_USERBUF_BYTES, UINT32_MAX
from signer.core.policy import DEFAULT_POLICY, UserIdPolicy

V1_VERSION_STAMP = "201803230000"


class IssuedToken(NamedTuple):
    """A freshly signed UserSig and the facts a caller needs to cache or hand it out.

    ``key_version`` labels the key that signed, when the caller keeps several (rotation).
    A named tuple, not a dataclass: the service builds one per token, thousands per batch,
    and a tuple is cheaper to make (see docs/PERFORMANCE.md)."""

    usersig: str
    userid: str
    sdkappid: int
    issued_at: int
    expire: int
    token_version: Literal[1, 2]
    key_version: str = ""

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.expire


class TokenSigner(Protocol):
    """What the engine and the service need of a signer, whatever the algorithm."""

    sdkappid: int
    token_version: Literal[1, 2]
    policy: UserIdPolicy
    key_version: str

    def sign(
        self,
        userid: str,
        expire: int = DEFAULT_EXPIRE,
        userbuf: bytes | None = None,
        issued_at: int | None = None,
    ) -> IssuedToken: ...


def check_sdkappid(sdkappid: int) -> int:
    if isinstance(sdkappid, bool) or not isinstance(sdkappid, int):
        raise InvalidArgument("sdkappid", "sdkappid must be an integer")
    if not 0 < sdkappid <= UINT32_MAX:
        raise InvalidArgument("sdkappid", f"sdkappid must be in 1..{UINT32_MAX}")
    return sdkappid


def check_times(expire: int, issued_at: int | None) -> int:
    """Return the issue time (now unless given) after checking both fit Tencent's fields."""
    now = int(time.time()) if issued_at is None else issued_at
    if isinstance(now, bool) or not isinstance(now, int):
        raise InvalidArgument("issued_at", "issued_at must be an integer unix time")
    if isinstance(expire, bool) or not isinstance(expire, int) or expire <= 0:
        raise InvalidArgument("expire", "expire must be a positive number of seconds")
    if not 0 <= now <= UINT32_MAX or now + expire > UINT32_MAX:
        raise InvalidArgument(
            "expire", f"issue time plus expire must stay within 32 bits (<= {UINT32_MAX})"
        )
    return now


def _encode_userbuf(userbuf: bytes | None) -> str | None:
    if userbuf is None:
        return None
    if not isinstance(userbuf, bytes | bytearray | memoryview):
        raise InvalidArgument("userbuf", "userbuf must be bytes")
    if len(userbuf) > MAX_USERBUF_BYTES:
        raise InvalidArgument(
            "userbuf", f"userbuf is {len(userbuf)} bytes; the limit is {MAX_USERBUF_BYTES}"
        )
    return b64encode(userbuf)


class V1Signer:
    """Signs version 1 tokens (ECDSA/SHA-256 over six or seven lines) for one app."""

    token_version: Literal[1, 2] = 1

    def __init__(
        self,
        sdkappid: int,
        key: EcPrivateKey,
        policy: UserIdPolicy = DEFAULT_POLICY,
        key_version: str = "",
    ) -> None:
        self.sdkappid = check_sdkappid(sdkappid)
        self.key = key
        self.policy = policy
        self.key_version = key_version
        self._appid = str(sdkappid)

    def __repr__(self) -> str:
        return f"V1Signer(sdkappid={self.sdkappid}, curve={self.key.curve.value})"

    def sign(
        self,
        userid: str,
        expire: int = DEFAULT_EXPIRE,
        userbuf: bytes | None = None,
        issued_at: int | None = None,
    ) -> IssuedToken:
        self.policy.check(userid)
        now = check_times(expire, issued_at)
        userbuf_b64 = _encode_userbuf(userbuf)
        time_text, expire_text = str(now), str(expire)
        fields = {
            "TLS.account_type": "0",
            "TLS.identifier": userid,
            "TLS.appid_at_3rd": "0",
            "TLS.sdk_appid": self._appid,
            "TLS.expire_after": expire_text,
            "TLS.version": V1_VERSION_STAMP,
            "TLS.time": time_text,
        }
        text = (
            f"TLS.appid_at_3rd:0\nTLS.account_type:0\nTLS.identifier:{userid}\n"
            f"TLS.sdk_appid:{self._appid}\nTLS.time:{time_text}\nTLS.expire_after:{expire_text}\n"
        )
        if userbuf_b64 is not None:
            fields["TLS.userbuf"] = userbuf_b64
            text += f"TLS.userbuf:{userbuf_b64}\n"
        fields["TLS.sig"] = b64encode(self.key.sign(text.encode()))
        return IssuedToken(pack(fields), userid, self.sdkappid, now, expire, 1, self.key_version)


class V2Signer:
    """Signs version 2 tokens (HMAC-SHA256 over four or five lines) for one app."""

    token_version: Literal[1, 2] = 2

    def __init__(
        self,
        sdkappid: int,
        secret: HmacSecret,
        policy: UserIdPolicy = DEFAULT_POLICY,
        key_version: str = "",
    ) -> None:
        self.sdkappid = check_sdkappid(sdkappid)
        self.secret = secret
        self.policy = policy
        self.key_version = key_version

    def __repr__(self) -> str:
        return f"V2Signer(sdkappid={self.sdkappid})"

    def sign(
        self,
        userid: str,
        expire: int = DEFAULT_EXPIRE,
        userbuf: bytes | None = None,
        issued_at: int | None = None,
    ) -> IssuedToken:
        self.policy.check(userid)
        now = check_times(expire, issued_at)
        userbuf_b64 = _encode_userbuf(userbuf)
        text = v2_signed_text(userid, self.sdkappid, now, expire, userbuf_b64)
        fields: dict[str, str | int] = {
            "TLS.ver": "2.0",
            "TLS.identifier": userid,
            "TLS.sdkappid": self.sdkappid,
            "TLS.expire": expire,
            "TLS.time": now,
            "TLS.sig": b64encode(self.secret.digest(text)),
        }
        if userbuf_b64 is not None:
            fields["TLS.userbuf"] = userbuf_b64
        return IssuedToken(pack(fields), userid, self.sdkappid, now, expire, 2, self.key_version)


def make_signer(
    sdkappid: int,
    key: EcPrivateKey | HmacSecret,
    policy: UserIdPolicy = DEFAULT_POLICY,
    key_version: str = "",
) -> V1Signer | V2Signer:
    """The signer for ``key``'s algorithm: ECDSA keys sign v1, HMAC secrets v2."""
    if isinstance(key, EcPrivateKey):
        return V1Signer(sdkappid, key, policy, key_version)
    return V2Signer(sdkappid, key, policy, key_version)


_V1_LINES = (
    "TLS.appid_at_3rd",
    "TLS.account_type",
    "TLS.identifier",
    "TLS.sdk_appid",
    "TLS.time",
    "TLS.expire_after",
    "TLS.userbuf",
)


def v1_signed_text(fields: dict[str, str]) -> bytes:
    """The text a v1 signature covers, built from the JSON fields present.

    ``TLS.appid_at_3rd`` and ``TLS.userbuf`` lines appear only when the fields do.
    """
    return "".join(f"{name}:{fields[name]}\n" for name in _V1_LINES if name in fields).encode()


def v2_signed_text(
    userid: str, sdkappid: int, issued_at: int, expire: int, userbuf_b64: str | None
) -> bytes:
    """The text a v2 HMAC covers."""
    text = (
        f"TLS.identifier:{userid}\nTLS.sdkappid:{sdkappid}\n"
        f"TLS.time:{issued_at}\nTLS.expire:{expire}\n"
    )
    if userbuf_b64 is not None:
        text += f"TLS.userbuf:{userbuf_b64}\n"
    return text.encode()
