"""The compact byte form of a cached token, for stores outside the process (Redis).

Every byte counts. Redis keeps a string value of up to 252 bytes in jemalloc's 256-byte
class and anything longer in the 320 one, and a v1 P-256 entry sits right at that edge (its
usersig alone is about 230 raw bytes): for 11-character userids, one byte of header moves
about a quarter of all entries across (docs/PERFORMANCE.md). The service's own tokens
therefore get a layout of their own, and anything it cannot hold falls back to the
general one.

Layout 3 (big-endian), the service's tokens: a lead byte ``1 ll uuuuu`` (high bit set;
``uuuuu`` is the userid's UTF-8 length minus one, so 1-32 bytes, the default
``max_userid_bytes``; ``ll`` says how the lifetime is written), issued_at u32, sdkappid
u32, the lifetime (expires_at - issued_at) as ``ll`` says: 00 nothing, it is 180 days
(Tencent's and the service's default), 01 u8 days, 10 u8 hours, 11 u32 seconds; then the
UTF-8 userid, then the usersig as its raw zlib bytes less the 2-byte zlib header, which
must be ``78 5e`` (what the envelope's ISA-L level 1 writes). For the default lifetime an
entry is 8 bytes shorter than in layout 2: a 9-byte header instead of 15, and no zlib
header.

Layout 2: a layout byte (2), flags 1 byte, issued_at u32, expires_at u32, sdkappid u32,
userid length (u8, or u16 with flag 2) + UTF-8 userid, then the usersig: its raw zlib
bytes under the base64 (flag 1) whenever the text is the canonical encoding of those
bytes, else the text. Any token at all: written when layout 3 cannot hold the entry.

Both carry the token, issued_at, expires_at, the userid and the sdkappid, so a read can
check whom the token was issued for. The key version is not stored: it is part of the
cache key, and the reader passes it in. Layout 1 (which also stored the key version) is
still read. Anything that does not parse decodes to ``None``: a corrupt entry is a miss,
never an error.
"""

from __future__ import annotations

import binascii
import struct

from signer.cache.base import CachedToken
from signer.core.envelope import urlsafe_b64encode

_LAYOUT1 = 1
_LAYOUT2 = 2
_RAW_USERSIG = 1
_LONG_USERID = 2
_HEAD2 = struct.Struct(">BBIII")
_HEAD1 = struct.Struct(">BBIIIH")
_U16 = struct.Struct(">H")
_FROM_URL = bytes.maketrans(b"*-_", b"+/=")

_LAYOUT3 = 0x80
_ZLIB_HEADER = b"\x78\x5e"
_HEAD3 = struct.Struct(">BII")  # lead byte, issued_at, sdkappid
_HEAD3_U8 = struct.Struct(">BIIB")  # ... and the lifetime in days or hours
_HEAD3_U32 = struct.Struct(">BIII")  # ... or in seconds
_MAX_USERID3 = 32
_DEFAULT_LIFETIME = 180 * 86400  # a stored format: never follow a configurable default
_DAY = 86400
_HOUR = 3600
_LIFE_DEFAULT, _LIFE_DAYS, _LIFE_HOURS, _LIFE_SECONDS = 0x00, 0x20, 0x40, 0x60


def _raw_usersig(usersig: str) -> bytes | None:
    try:
        raw = binascii.a2b_base64(usersig.encode("ascii").translate(_FROM_URL), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return raw if urlsafe_b64encode(raw) == usersig else None


def encode(token: CachedToken) -> bytes:
    userid = token.userid.encode("utf-8", "surrogatepass")
    raw = _raw_usersig(token.usersig)
    if raw is not None and 0 < len(userid) <= _MAX_USERID3 and raw.startswith(_ZLIB_HEADER):
        head = _head3(token, len(userid))
        if head is not None and len(raw) > 2:
            return b"".join((head, userid, raw[2:]))
    flags = _RAW_USERSIG if raw is not None else 0
    if len(userid) > 255:
        flags |= _LONG_USERID
        length = _U16.pack(len(userid))
    else:
        length = bytes((len(userid),))
    body = raw if raw is not None else token.usersig.encode("utf-8")
    head = _HEAD2.pack(_LAYOUT2, flags, token.issued_at, token.expires_at, token.sdkappid)
    return b"".join((head, length, userid, body))


def _head3(token: CachedToken, user_len: int) -> bytes | None:
    """Layout 3's header, or ``None`` if the lifetime does not fit (layout 2 then)."""
    lead = _LAYOUT3 | (user_len - 1)
    issued_at, sdkappid = token.issued_at, token.sdkappid
    lifetime = token.expires_at - issued_at
    if lifetime == _DEFAULT_LIFETIME:
        return _HEAD3.pack(lead | _LIFE_DEFAULT, issued_at, sdkappid)
    if 0 < lifetime < 256 * _DAY and lifetime % _DAY == 0:
        return _HEAD3_U8.pack(lead | _LIFE_DAYS, issued_at, sdkappid, lifetime // _DAY)
    if 0 < lifetime < 256 * _HOUR and lifetime % _HOUR == 0:
        return _HEAD3_U8.pack(lead | _LIFE_HOURS, issued_at, sdkappid, lifetime // _HOUR)
    if 0 <= lifetime < 1 << 32:
        return _HEAD3_U32.pack(lead | _LIFE_SECONDS, issued_at, sdkappid, lifetime)
    return None


def decode(data: bytes, key_version: str) -> CachedToken | None:
    """The entry in ``data``; ``key_version`` is the one its cache key names."""
    try:
        lead = data[0]
        if lead & _LAYOUT3:
            return _decode3(data, key_version)
        if lead == _LAYOUT1:
            return _decode1(data)
        layout, flags, issued_at, expires_at, sdkappid = _HEAD2.unpack_from(data)
        if layout != _LAYOUT2:
            return None
        offset = _HEAD2.size
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


def _decode3(data: bytes, key_version: str) -> CachedToken | None:
    # Raises struct.error, IndexError or UnicodeDecodeError on bytes that do not parse.
    lead, issued_at, sdkappid = _HEAD3.unpack_from(data)
    life = lead & 0x60
    if life == _LIFE_DEFAULT:
        lifetime, start = _DEFAULT_LIFETIME, 9
    elif life == _LIFE_DAYS:
        lifetime, start = data[9] * _DAY, 10
    elif life == _LIFE_HOURS:
        lifetime, start = data[9] * _HOUR, 10
    else:
        lead, issued_at, sdkappid, lifetime = _HEAD3_U32.unpack_from(data)
        start = 13
    end = start + (lead & 0x1F) + 1
    if len(data) <= end:
        return None  # cut short: no usersig
    userid = data[start:end].decode("utf-8", "surrogatepass")
    usersig = urlsafe_b64encode(_ZLIB_HEADER + data[end:])
    return CachedToken(usersig, userid, sdkappid, issued_at, issued_at + lifetime, key_version)


def _decode1(data: bytes) -> CachedToken | None:
    _, flags, issued_at, expires_at, sdkappid, user_len = _HEAD1.unpack_from(data)
    offset = _HEAD1.size
    userid = data[offset : offset + user_len].decode("utf-8", "surrogatepass")
    offset += user_len
    version_len = data[offset]
    key_version = data[offset + 1 : offset + 1 + version_len].decode("utf-8")
    body = data[offset + 1 + version_len :]
    usersig = urlsafe_b64encode(body) if flags & _RAW_USERSIG else body.decode("utf-8")
    if not usersig:
        return None
    return CachedToken(usersig, userid, sdkappid, issued_at, expires_at, key_version)
