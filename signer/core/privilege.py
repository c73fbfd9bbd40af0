"""TRTC room privilege userbufs ("PrivateMapKey").

A PrivateMapKey is a v2 token whose userbuf grants rights in one room. The userbuf is
big-endian binary; every length in it counts UTF-8 bytes, so non-ASCII userids and room ids
round-trip (Tencent's npm package writes one byte per UTF-16 unit and breaks them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from signer.core.errors import InvalidArgument
from signer.core.limits import DEFAULT_EXPIRE, MAX_ROOM_STR_BYTES, PRIVILEGE_ALL, UINT32_MAX
from signer.core.policy import DEFAULT_POLICY, UserIdPolicy, first_control_character
from signer.core.tokens import IssuedToken, TokenSigner, check_sdkappid, check_times

_U16 = struct.Struct(">H")
_FIXED = struct.Struct(">IIIII")  # sdkappid, room id, expiry, privilege, account type
_PRIVILEGE_BITS = PRIVILEGE_ALL


@dataclass(frozen=True, slots=True)
class PrivilegeMap:
    """The decoded content of a room privilege userbuf."""

    userid: str
    sdkappid: int
    room_id: int
    room_str: str | None
    expires_at: int
    privilege: int
    account_type: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "userid": self.userid,
            "sdkappid": self.sdkappid,
            "room_id": self.room_id,
            "room_str": self.room_str,
            "expires_at": self.expires_at,
            "privilege": self.privilege,
            "account_type": self.account_type,
        }


def check_privilege(privilege: int) -> int:
    if isinstance(privilege, bool) or not isinstance(privilege, int):
        raise InvalidArgument("privilege", "privilege must be an integer bit map")
    if not 0 <= privilege <= _PRIVILEGE_BITS:
        raise InvalidArgument("privilege", f"privilege must be in 0..{_PRIVILEGE_BITS}")
    return privilege


def check_room(room_id: int | None, room_str: str | None) -> tuple[int, bytes | None]:
    """Validate the room: exactly one of a numeric id (1..2^32-1) or a string id."""
    if (room_id is None) == (room_str is None):
        raise InvalidArgument("room_id", "give exactly one of room_id and room_str")
    if room_str is None:
        if isinstance(room_id, bool) or not isinstance(room_id, int):
            raise InvalidArgument("room_id", "room_id must be an integer")
        if not 0 < room_id <= UINT32_MAX:
            raise InvalidArgument("room_id", f"room_id must be in 1..{UINT32_MAX}")
        return room_id, None
    try:
        encoded = room_str.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        raise InvalidArgument("room_str", "room_str must be valid Unicode text") from None
    if not encoded:
        raise InvalidArgument("room_str", "room_str is empty")
    if len(encoded) > MAX_ROOM_STR_BYTES:
        raise InvalidArgument(
            "room_str", f"room_str is {len(encoded)} bytes; the limit is {MAX_ROOM_STR_BYTES}"
        )
    if first_control_character(room_str) is not None:
        raise InvalidArgument("room_str", "room_str contains a control character")
    return 0, encoded


def encode_privilege_map(
    userid: str,
    sdkappid: int,
    expires_at: int,
    *,
    room_id: int | None = None,
    room_str: str | None = None,
    privilege: int = PRIVILEGE_ALL,
    policy: UserIdPolicy = DEFAULT_POLICY,
) -> bytes:
    """The userbuf granting ``privilege`` in one room until ``expires_at`` (unix seconds)."""
    user = policy.check(userid)
    if len(user) > 0xFFFF:
        raise InvalidArgument("userid", "userid is longer than a privilege map can hold")
    check_sdkappid(sdkappid)
    number, name = check_room(room_id, room_str)
    check_privilege(privilege)
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise InvalidArgument("expire", "privilege expiry must be an integer")
    if not 0 <= expires_at <= UINT32_MAX:
        raise InvalidArgument("expire", "privilege expiry must fit in 32 bits")
    parts = [
        b"\x01" if name is not None else b"\x00",
        _U16.pack(len(user)),
        user,
        _FIXED.pack(sdkappid, number, expires_at, privilege, 0),
    ]
    if name is not None:
        parts += [_U16.pack(len(name)), name]
    return b"".join(parts)


def decode_privilege_map(userbuf: bytes) -> PrivilegeMap | None:
    """Parse a privilege userbuf; ``None`` if the bytes are not exactly one."""
    if len(userbuf) < 3 or userbuf[0] not in (0, 1):
        return None
    is_string = userbuf[0] == 1
    (user_len,) = _U16.unpack_from(userbuf, 1)
    offset = 3 + user_len
    if len(userbuf) < offset + _FIXED.size:
        return None
    try:
        userid = userbuf[3:offset].decode("utf-8")
    except UnicodeDecodeError:
        return None
    sdkappid, room_id, expires_at, privilege, account_type = _FIXED.unpack_from(userbuf, offset)
    offset += _FIXED.size
    room_str = None
    if is_string:
        if len(userbuf) < offset + 2:
            return None
        (room_len,) = _U16.unpack_from(userbuf, offset)
        offset += 2
        try:
            room_str = userbuf[offset : offset + room_len].decode("utf-8")
        except UnicodeDecodeError:
            return None
        offset += room_len
    if offset != len(userbuf):
        return None
    return PrivilegeMap(userid, sdkappid, room_id, room_str, expires_at, privilege, account_type)


def sign_privatemapkey(
    signer: TokenSigner,
    userid: str,
    *,
    room_id: int | None = None,
    room_str: str | None = None,
    privilege: int = PRIVILEGE_ALL,
    expire: int = DEFAULT_EXPIRE,
    issued_at: int | None = None,
) -> IssuedToken:
    """A token whose userbuf grants ``privilege`` in one TRTC room for ``expire`` seconds.

    The privilege expiry inside the userbuf equals the token's own expiry.
    """
    now = check_times(expire, issued_at)
    userbuf = encode_privilege_map(
        userid,
        signer.sdkappid,
        now + expire,
        room_id=room_id,
        room_str=room_str,
        privilege=privilege,
        policy=signer.policy,
    )
    return signer.sign(userid, expire, userbuf, now)
