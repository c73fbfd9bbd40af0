"""The compact byte form of a cached token, for stores outside the process (Redis).

Layout (big-endian): version 1 byte, flags 1 byte, issued_at u32, expires_at u32,
sdkappid u32, userid length u16 + UTF-8 userid, key version length u8 + text, then the
usersig. The usersig is stored as the raw zlib bytes under its base64 (flag 1), a quarter
smaller than the text, whenever the text is the canonical encoding of those bytes.
Anything that does not parse decodes to ``None``: a corrupt entry is a miss, never an error.
"""

from __future__ import annotations

import binascii
import struct

from signer.cache.base import CachedToken
from signer.core.envelope import urlsafe_b64encode

_VERSION = 1
_RAW_USERSIG = 1
_HEAD = struct.Struct(">BBIIIH")
_FROM_URL = bytes.maketrans(b"*-_", b"+/=")


def _raw_usersig(usersig: str) -> bytes | None:
    try:
        raw = binascii.a2b_base64(usersig.encode("ascii").translate(_FROM_URL), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return raw if urlsafe_b64encode(raw) == usersig else None


def encode(token: CachedToken) -> bytes:
    userid = token.userid.encode("utf-8", "surrogatepass")
    version = token.key_version.encode("utf-8")[:255]
    raw = _raw_usersig(token.usersig)
    flags = _RAW_USERSIG if raw is not None else 0
    body = raw if raw is not None else token.usersig.encode("utf-8")
    head = _HEAD.pack(
        _VERSION, flags, token.issued_at, token.expires_at, token.sdkappid, len(userid)
    )
    return b"".join((head, userid, bytes((len(version),)), version, body))


def decode(data: bytes) -> CachedToken | None:
    try:
        version, flags, issued_at, expires_at, sdkappid, user_len = _HEAD.unpack_from(data)
        if version != _VERSION:
            return None
        offset = _HEAD.size
        userid = data[offset : offset + user_len].decode("utf-8", "surrogatepass")
        offset += user_len
        version_len = data[offset]
        key_version = data[offset + 1 : offset + 1 + version_len].decode("utf-8")
        body = data[offset + 1 + version_len :]
        usersig = urlsafe_b64encode(body) if flags & _RAW_USERSIG else body.decode("utf-8")
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    if not usersig:
        return None
    return CachedToken(usersig, userid, sdkappid, issued_at, expires_at, key_version)
