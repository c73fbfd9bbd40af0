"""Properties over generated inputs: round trips for every allowed userid, and tampering."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from signer.core import (
    Curve,
    HmacSecret,
    InvalidUserId,
    UserIdPolicy,
    V1Signer,
    V2Signer,
    VerificationError,
    decode,
    generate_private_key,
    verify,
)
from tests.conftest import ISSUED_AT, SDKAPPID, SECRET_TEXT

POLICY = UserIdPolicy()
P256 = generate_private_key(Curve.P256)
K1 = generate_private_key(Curve.SECP256K1)
SECRET = HmacSecret.from_text(SECRET_TEXT)
SIGNERS = [V1Signer(SDKAPPID, P256), V1Signer(SDKAPPID, K1), V2Signer(SDKAPPID, SECRET)]
KEYS = [P256.public_key(), K1.public_key(), SECRET]
TOKEN_ALPHABET = string.ascii_letters + string.digits + "*-_+/=$"


def allowed(userid: str) -> bool:
    try:
        POLICY.check(userid)
    except InvalidUserId:
        return False
    return True


userids = st.text(min_size=1, max_size=32).filter(allowed)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    userid=userids,
    which=st.integers(0, 2),
    expire=st.integers(1, 10**8),
    userbuf=st.none() | st.binary(max_size=64),
)
@example(userid='"\\😀', which=0, expire=1, userbuf=None)
def test_sign_verify_round_trip(
    userid: str, which: int, expire: int, userbuf: bytes | None
) -> None:
    """Any userid the policy allows signs and verifies, with every algorithm."""
    token = SIGNERS[which].sign(userid, expire, userbuf, ISSUED_AT)
    result = verify(
        token.usersig, userid=userid, sdkappid=SDKAPPID, key=KEYS[which], now=ISSUED_AT + expire
    )
    assert result.identifier == userid
    assert result.expires_at == ISSUED_AT + expire


TOKENS = [s.sign("user_1", 3600, None, ISSUED_AT).usersig for s in SIGNERS]


@settings(max_examples=1500)
@given(which=st.integers(0, 2), data=st.data())
def test_single_byte_change_fails_with_a_code(which: int, data: st.DataObject) -> None:
    """Changing any one character makes verification fail with a code, never raise.

    The one exception is a change the decoder provably ignores (the spare bits that pad
    the last deflate byte): then the decoded content must be exactly the original's.
    """
    token = TOKENS[which]
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(TOKEN_ALPHABET) | st.characters())
    if replacement == token[position]:
        return
    mutated = token[:position] + replacement + token[position + 1 :]
    try:
        verify(mutated, userid="user_1", sdkappid=SDKAPPID, key=KEYS[which], now=ISSUED_AT)
    except VerificationError as exc:
        assert exc.code in {2, 3, 4, 6, 7, 8, 10, 13, 14, 15}
        return
    assert decode(mutated) == decode(token)


@settings(max_examples=500)
@given(garbage=st.text(max_size=400) | st.binary(max_size=300).map(lambda b: b.hex()))
def test_arbitrary_text_never_raises_anything_else(garbage: str) -> None:
    """Arbitrary input is a VerificationError with a code, whatever it is."""
    for key in KEYS:
        try:
            verify(garbage, userid="u", sdkappid=SDKAPPID, key=key, now=ISSUED_AT)
        except VerificationError as exc:
            assert 1 <= exc.code <= 16
