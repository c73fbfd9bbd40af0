"""TRTC room privilege userbufs (PrivateMapKey): exact bytes, UTF-8 lengths, round trips."""

from __future__ import annotations

import struct

import pytest

from signer.core import (
    HmacSecret,
    InvalidArgument,
    UserbufError,
    V1Signer,
    V2Signer,
    decode_privilege_map,
    encode_privilege_map,
    sign_privatemapkey,
    verify,
)
from tests.conftest import ISSUED_AT, SDKAPPID


class TestLayout:
    def test_numeric_room_bytes(self) -> None:
        """A numeric room id: flag 0, userid, five big-endian u32s, nothing after."""
        buf = encode_privilege_map("ab", 1400000001, 1234, room_id=42, privilege=7)
        assert buf == b"\x00\x00\x02ab" + struct.pack(">IIIII", 1400000001, 42, 1234, 7, 0)

    def test_string_room_bytes_use_utf8_lengths(self) -> None:
        """Non-ASCII userid and room string: lengths count UTF-8 bytes."""
        buf = encode_privilege_map("用户", 1, 99, room_str="房间A")
        user, room = "用户".encode(), "房间A".encode()
        assert buf == (
            b"\x01"
            + struct.pack(">H", len(user))
            + user
            + struct.pack(">IIIII", 1, 0, 99, 255, 0)
            + struct.pack(">H", len(room))
            + room
        )

    def test_decode_inverts_encode(self) -> None:
        buf = encode_privilege_map("u", 5, 77, room_str="r")
        decoded = decode_privilege_map(buf)
        assert decoded is not None
        assert (decoded.userid, decoded.sdkappid, decoded.room_str, decoded.expires_at) == (
            "u",
            5,
            "r",
            77,
        )

    @pytest.mark.parametrize(
        "junk", [b"", b"\x02", b"\x00\x00\x05ab", b"\x00\x00\x01a" + b"\0" * 21]
    )
    def test_decode_rejects_non_maps(self, junk: bytes) -> None:
        assert decode_privilege_map(junk) is None


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({}, "room_id"),
            ({"room_id": 1, "room_str": "a"}, "room_id"),
            ({"room_id": 0}, "room_id"),
            ({"room_id": 2**32}, "room_id"),
            ({"room_str": ""}, "room_str"),
            ({"room_str": "x" * 65}, "room_str"),
            ({"room_str": "a\nb"}, "room_str"),
            ({"room_str": "a\x85b"}, "room_str"),
            ({"room_str": "a\u2028b"}, "room_str"),
            ({"room_id": 1, "privilege": 256}, "privilege"),
            ({"room_id": 1, "privilege": -1}, "privilege"),
        ],
    )
    def test_bad_room_or_privilege(self, kwargs: dict[str, object], field: str) -> None:
        with pytest.raises(InvalidArgument) as info:
            encode_privilege_map("u", 1, 1, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


def test_sdkappid_and_expiry_are_range_checked() -> None:
    """Out-of-range numbers are InvalidArgument, never a struct.error."""
    for kwargs in (
        {"sdkappid": 2**33, "expires_at": 1},
        {"sdkappid": -1, "expires_at": 1},
        {"sdkappid": 1, "expires_at": 5.5},
    ):
        with pytest.raises(InvalidArgument):
            encode_privilege_map("u", room_id=1, **kwargs)  # type: ignore[arg-type]


class TestPrivateMapKey:
    @pytest.mark.parametrize("room", [{"room_id": 1234}, {"room_str": "会议室-1"}])
    def test_verifies_and_decodes(self, v2_signer: V2Signer, room: dict[str, object]) -> None:
        """A PrivateMapKey verifies and its privilege map comes back decoded."""
        token = sign_privatemapkey(
            v2_signer,
            "用户",
            privilege=3,
            expire=300,
            issued_at=ISSUED_AT,
            **room,  # type: ignore[arg-type]
        )
        result = verify(
            token.usersig, userid="用户", sdkappid=SDKAPPID, key=v2_signer.secret, now=ISSUED_AT
        )
        assert result.privilege_map is not None
        assert result.privilege_map.privilege == 3
        assert result.privilege_map.expires_at == ISSUED_AT + 300
        assert result.privilege_map.room_id == room.get("room_id", 0)
        assert result.privilege_map.room_str == room.get("room_str")

    def test_works_with_v1_keys_too(self, v1_signer: V1Signer) -> None:
        token = sign_privatemapkey(v1_signer, "u", room_id=9, issued_at=ISSUED_AT)
        result = verify(
            token.usersig,
            userid="u",
            sdkappid=SDKAPPID,
            key=v1_signer.key.public_key(),
            now=ISSUED_AT,
        )
        assert result.privilege_map is not None and result.privilege_map.room_id == 9

    def test_map_for_another_user_is_code_15(self, secret: HmacSecret) -> None:
        """A validly signed token whose privilege map names someone else fails with 15."""
        signer = V2Signer(SDKAPPID, secret)
        buf = encode_privilege_map("mallory", SDKAPPID, ISSUED_AT + 60, room_id=1)
        token = signer.sign("alice", 60, buf, ISSUED_AT).usersig
        with pytest.raises(UserbufError) as info:
            verify(token, userid="alice", sdkappid=SDKAPPID, key=secret, now=ISSUED_AT)
        assert info.value.code == 15
