"""The compact stored form of a cached token."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from signer.cache import codec
from signer.cache.base import CachedToken
from signer.core import EcPrivateKey, HmacSecret, V1Signer, V2Signer
from signer.core.envelope import compress, urlsafe_b64encode

DAY = 86400
# A usersig as the envelope writes it: zlib (ISA-L level 1, header 78 5e), url-mapped base64.
USERSIG = urlsafe_b64encode(compress(b'{"TLS.identifier":"alice","TLS.sig":"x"}'))


def raw_len(usersig: str) -> int:
    return len(base64.b64decode(usersig.translate(str.maketrans("*-_", "+/="))))


def entry(userid: str = "alice", lifetime: int = 180 * DAY, usersig: str = USERSIG) -> CachedToken:
    return CachedToken(usersig, userid, 1400000001, 1_795_000_000, 1_795_000_000 + lifetime, "7")


def test_real_token_round_trips_and_is_compact() -> None:
    token = V2Signer(1400000001, HmacSecret(b"k")).sign("user_42", 86400)
    cached = CachedToken.of(token)
    data = codec.encode(cached)
    assert codec.decode(data, token.key_version) == cached
    assert len(data) < len(token.usersig)  # raw zlib bytes, not base64 text
    assert len(data) <= 252  # jemalloc's 256-byte class in Redis, for a short userid


def test_v1_token_of_the_default_lifetime_takes_layout_3(p256_key: EcPrivateKey) -> None:
    """What the service caches most: a v1 P-256 token for 180 days. If the envelope ever
    writes another zlib header, this fails instead of every entry silently growing."""
    token = V1Signer(1400000001, p256_key).sign("user_123456")
    cached = CachedToken.of(token)
    data = codec.encode(cached)
    assert data[0] & 0x80
    # 9 bytes of header + userid + the usersig's raw bytes less their 2-byte zlib header
    assert len(data) == 9 + 11 + raw_len(token.usersig) - 2
    assert codec.decode(data, token.key_version) == cached


@pytest.mark.parametrize(
    ("lifetime", "header"),
    [
        (180 * DAY, 9),  # the default: no lifetime bytes at all
        (DAY, 10),
        (7 * DAY, 10),
        (255 * DAY, 10),
        (3600, 10),
        (12 * 3600, 10),
        (256 * DAY, 13),
        (365 * DAY, 13),
        (90 * 60, 13),
        (60, 13),
        (0, 13),
        (10 * 365 * DAY, 13),
        (2**32 - 1, 13),
    ],
)
def test_every_lifetime_round_trips(lifetime: int, header: int) -> None:
    cached = entry(lifetime=lifetime)
    data = codec.encode(cached)
    assert data[0] & 0x80
    assert len(data) == header + len("alice") + raw_len(USERSIG) - 2
    assert codec.decode(data, "7") == cached


@pytest.mark.parametrize(
    "userid",
    [
        "a",
        "x" * 32,  # the default userid limit, in bytes
        "用户_ü",  # 3-byte and 2-byte UTF-8
        "ü" * 16,  # exactly 32 bytes
        "\U0001f600" * 8,  # 4-byte UTF-8, 32 bytes
        "a:b}{c",  # characters that mean something in the cache key
        "\ud800lone",  # a lone surrogate (the codec passes it through)
    ],
)
def test_userids_up_to_32_bytes_take_layout_3(userid: str) -> None:
    cached = entry(userid)
    data = codec.encode(cached)
    assert data[0] & 0x80
    assert codec.decode(data, "7") == cached


@pytest.mark.parametrize(
    "cached",
    [
        entry("x" * 33),  # longer than layout 3 holds
        entry("ü" * 17),  # 34 bytes
        entry("y" * 1024),  # u16 length in layout 2
        entry(""),  # no userid
        entry(usersig="not*canonical"),  # stored as text
        entry(usersig="plain text ü"),
        entry(usersig=urlsafe_b64encode(zlib.compress(b"{}", 9))),  # header 78 da
        entry(usersig=urlsafe_b64encode(b"\x78\x5e")),  # a zlib header and nothing else
        entry(lifetime=-1),  # expires before it is issued
    ],
    ids=lambda c: f"userid {len(c.userid)}, usersig {c.usersig[:8]!r}, {c.expires_at}",
)
def test_what_layout_3_cannot_hold_takes_layout_2(cached: CachedToken) -> None:
    data = codec.encode(cached)
    assert data[0] == 2
    assert codec.decode(data, "7") == cached


def test_layout_3_is_pinned() -> None:
    """The stored format, byte for byte: entries written today are read by later releases."""
    usersig = urlsafe_b64encode(bytes.fromhex("785e") + b"rest")
    # lead 1 01 00010: days, 3-byte userid; issued_at; sdkappid; 7 days
    week = codec.encode(entry("bob", lifetime=7 * DAY, usersig=usersig))
    assert week == bytes.fromhex("a2 6afd86c0 53724e01 07") + b"bob" + b"rest"
    default = codec.encode(entry("bob", usersig=usersig))  # lead 1 00 00010, 180 days
    assert default == bytes.fromhex("82 6afd86c0 53724e01") + b"bob" + b"rest"
    hours = codec.encode(entry("bob", lifetime=5 * 3600, usersig=usersig))
    assert hours == bytes.fromhex("c2 6afd86c0 53724e01 05") + b"bob" + b"rest"
    seconds = codec.encode(entry("bob", lifetime=61, usersig=usersig))
    assert seconds == bytes.fromhex("e2 6afd86c0 53724e01 0000003d") + b"bob" + b"rest"


def test_layouts_1_and_2_are_still_read() -> None:
    """Entries that older releases wrote stay readable until they expire."""
    raw = bytes.fromhex("785e") + b"rest"
    usersig = urlsafe_b64encode(raw)
    userid = "用户".encode()
    v1 = struct.pack(">BBIIIH", 1, 1, 1_795_000_000, 1_795_086_400, 1400000001, len(userid))
    v1 += userid + b"\x02" + b"v9" + raw
    assert codec.decode(v1, "ignored") == CachedToken(
        usersig, "用户", 1400000001, 1_795_000_000, 1_795_086_400, "v9"
    )
    v2 = struct.pack(">BBIIIB", 2, 1, 1_795_000_000, 1_795_086_400, 1400000001, len(userid))
    v2 += userid + raw
    assert codec.decode(v2, "7") == CachedToken(
        usersig, "用户", 1400000001, 1_795_000_000, 1_795_086_400, "7"
    )
    text = struct.pack(">BBIIIH", 2, 2, 1, 2, 3, 3) + b"bob" + b"sig text"
    assert codec.decode(text, "7") == CachedToken("sig text", "bob", 3, 1, 2, "7")


@pytest.mark.parametrize("lifetime", [180 * DAY, 7 * DAY, 3600, 61])
def test_layout_3_cut_short_is_a_miss(lifetime: int) -> None:
    """Cut anywhere up to the end of the userid: no entry, not an error."""
    data = codec.encode(entry("ünï", lifetime=lifetime))
    header = len(data) - len("ünï".encode()) - raw_len(USERSIG) + 2
    for end in range(header + len("ünï".encode()) + 1):
        assert codec.decode(data[:end], "7") is None


def test_layout_3_with_a_broken_userid_is_a_miss() -> None:
    data = bytearray(codec.encode(entry("ab")))
    data[9] = 0xFF  # not UTF-8
    assert codec.decode(bytes(data), "7") is None


@given(st.text(min_size=1, max_size=300), st.text(max_size=300), st.integers(0, 2**32 - 1))
def test_any_entry_round_trips(userid: str, usersig: str, when: int) -> None:
    entry = CachedToken(usersig or "x", userid, 1, when, when, "v")
    assert codec.decode(codec.encode(entry), "v") == entry


@given(
    st.text(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=300),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.one_of(st.integers(-5, 2**32 + 5), st.sampled_from([180 * DAY, DAY, 3600, 255 * DAY])),
)
def test_any_envelope_token_round_trips(
    userid: str, body: bytes, sdkappid: int, issued_at: int, lifetime: int
) -> None:
    usersig = urlsafe_b64encode(b"\x78\x5e" + body)
    cached = CachedToken(usersig, userid, sdkappid, issued_at, issued_at + lifetime, "v")
    assume(0 <= issued_at + lifetime < 2**32)  # Tencent's times are u32, and layout 2's
    assert codec.decode(codec.encode(cached), "v") == cached


@given(st.binary(max_size=200))
def test_garbage_is_a_miss_not_an_error(data: bytes) -> None:
    decoded = codec.decode(data, "1")
    assert decoded is None or isinstance(decoded, CachedToken)
