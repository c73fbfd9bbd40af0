"""The compact stored form of a cached token."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signer.cache import codec
from signer.cache.base import CachedToken
from signer.core import HmacSecret, V2Signer


def test_real_token_round_trips_and_is_compact() -> None:
    token = V2Signer(1400000001, HmacSecret(b"k")).sign("user_42", 86400)
    entry = CachedToken(
        token.usersig, token.userid, token.sdkappid, token.issued_at, token.expires_at, "7"
    )
    data = codec.encode(entry)
    assert codec.decode(data, "7") == entry
    assert len(data) < len(token.usersig)  # raw zlib bytes, not base64 text
    assert len(data) <= 256  # jemalloc's 256-byte class, for a short userid


@given(st.text(min_size=1, max_size=300), st.text(max_size=300), st.integers(0, 2**32 - 1))
def test_any_entry_round_trips(userid: str, usersig: str, when: int) -> None:
    entry = CachedToken(usersig or "x", userid, 1, when, when, "v")
    assert codec.decode(codec.encode(entry), "v") == entry


@given(st.binary(max_size=200))
def test_garbage_is_a_miss_not_an_error(data: bytes) -> None:
    decoded = codec.decode(data, "1")
    assert decoded is None or isinstance(decoded, CachedToken)
