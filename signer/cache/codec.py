"""The compact byte form of a cached token, for stores outside the process (Redis).

Layout 2 (big-endian): version 1 byte, flags 1 byte, issued_at u32, expires_at u32,
sdkappid u32, userid length (u8, or u16 with flag 2) + UTF-8 userid, then the usersig.
The usersig is stored as the raw zlib bytes under its base64 (flag 1), a quarter smaller
than the text, whenever the text is the canonical encoding of those bytes. The key version
is not stored: it is part of the cache key, and the reader passes it in. Every byte
counts: a typical entry then fits jemalloc's 256-byte class instead of the 320 one.
Layout 1 (which also stored the key version) is still read. Anything that does not parse
decodes to ``None``: a corrupt entry is a miss, never an error.
"""

from __future__ import annotations

import binascii
import struct

from signer.cache.base import CachedToken
from signer.core.envelope import urlsafe_b64encode

_VERSION = 2
_RAW_USERSIG = 1
_LONG_USERID = 2
_HEAD = struct.Struct(">BBIII")
_HEAD_V1 = struct.Struct(">BBIIIH")
_U16 = struct.Struct(">H")
_FROM_URL = bytes.maketrans(b"*-_", b"+/=")


def _raw_usersig(usersig: str) -> bytes | None:
    try:
        raw = binascii.a2b_base64(usersig.encode("ascii").translate(_FROM_URL), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return raw if urlsafe_b64encode(raw) == usersig else None


def encode(token: CachedToken) -> bytes:
    userid = token.userid.encode("utf-8", "surrogatepass")
    raw = _raw_usersig(token.usersig)
    flags = _RAW_USERSIG if raw is not None else 0
    if len(userid) > 255:
        flags |= _LONG_USERID
        length = _U16.pack(len(userid))
    else:
        length = bytes((len(userid),))
    body = raw if raw is not None else token.usersig.encode("utf-8")
    head = _HEAD.pack(_VERSION, flags, token.issued_at, token.expires_at, token.sdkappid)
    return b"".join((head, length, userid, body))


def decode(data: bytes, key_version: str) -> CachedToken | None:
    """The entry in ``data``; ``key_version`` is the one its cache key names."""
    try:
        if data[:1] == b"\x01":
            return _decode_v1(data)
        version, flags, issued_at, expires_at, sdkappid = _HEAD.unpack_from(data)
        if version != _VERSION:
            return None
        offset = _HEAD.size
        if flags & _LONG_USERID:
            (user_len,) = _U16.unpack_from(data, offset)
            offset += 2
        else:
            user_len = data[offset]
            offset += 1
        userid = data[offset : offset + user_len].decode("utf-8", "surrogatepass")
        body = data[offset + user_len :]
        usersig = urlsafe_b64encode(body) if flags & _RAW_USERSIG else body.decode("utf-8")
    except (struct.error, IndexError, UnicodeDecodeError):
        return None
    if not usersig or len(userid.encode("utf-8", "surrogatepass")) != user_len:
        return None
    return CachedToken(usersig, userid, sdkappid, issued_at, expires_at, key_version)


def _decode_v1(data: bytes) -> CachedToken | None:
    _, flags, issued_at, expires_at, sdkappid, user_len = _HEAD_V1.unpack_from(data)
    offset = _HEAD_V1.size
    userid = data[offset : offset + user_len].decode("utf-8", "surrogatepass")
    offset += user_len
    version_len = data[offset]
    key_version = data[offset + 1 : offset + 1 + version_len].decode("utf-8")
    body = data[offset + 1 + version_len :]
    usersig = urlsafe_b64encode(body) if flags & _RAW_USERSIG else body.decode("utf-8")
    if not usersig:
        return None
    return CachedToken(usersig, userid, sdkappid, issued_at, expires_at, key_version)
