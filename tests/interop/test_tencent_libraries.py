"""Byte-level agreement with Tencent's own libraries.

v2: ``tls-sig-api-v2`` (PyPI) runs here, so its output is compared live. v1: Tencent's
``tls-sig-api`` 1.4 needs pyOpenSSL 24.2.1 / cryptography < 44, which conflict with ours, so
tokens it made are kept as fixtures (``fixtures/golden_v1``: the script, the pins, the keys).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import TLSSigAPIv2

from signer.core import (
    HmacSecret,
    IdentifierMismatch,
    UserIdPolicy,
    V2Signer,
    decode,
    load_private_key,
    load_public_key,
    verify,
)
from tests.conftest import FIXTURES, SECRET_TEXT

pytestmark = pytest.mark.interop

ISSUED_AT = 1_700_000_000
USERIDS = ["xiaojun", "user_0001", "中文用户", 'quo"te', "back\\slash", "😀emoji"]


@pytest.fixture
def tencent_v2(monkeypatch: pytest.MonkeyPatch) -> TLSSigAPIv2.TLSSigAPIv2:
    """Tencent's v2 signer with its clock pinned to ISSUED_AT."""
    monkeypatch.setattr(TLSSigAPIv2.time, "time", lambda: ISSUED_AT)
    return TLSSigAPIv2.TLSSigAPIv2(1400000000, SECRET_TEXT)


class TestTlsSigApiV2:
    @pytest.mark.parametrize("userid", USERIDS)
    @pytest.mark.parametrize("userbuf", [None, b"abc", bytes(range(40))])
    def test_sig_is_byte_identical(
        self, tencent_v2: TLSSigAPIv2.TLSSigAPIv2, userid: str, userbuf: bytes | None
    ) -> None:
        """Same inputs and issue time: identical TLS.sig and identical decoded fields."""
        if userbuf is None:
            theirs = tencent_v2.gen_sig(userid, 86400)
        else:
            theirs = tencent_v2.gen_sig_with_userbuf(userid, 86400, userbuf)
        ours = V2Signer(1400000000, HmacSecret.from_text(SECRET_TEXT)).sign(
            userid, 86400, userbuf, ISSUED_AT
        )
        assert decode(ours.usersig)["TLS.sig"] == decode(theirs)["TLS.sig"]
        assert decode(ours.usersig) == decode(theirs)

    @pytest.mark.parametrize("userid", USERIDS)
    def test_their_tokens_verify_here(
        self, tencent_v2: TLSSigAPIv2.TLSSigAPIv2, userid: str
    ) -> None:
        for token in (
            tencent_v2.gen_sig(userid),
            tencent_v2.gen_sig_with_userbuf(userid, 60, b"x"),
        ):
            result = verify(
                token,
                userid=userid,
                sdkappid=1400000000,
                key=HmacSecret.from_text(SECRET_TEXT),
                now=ISSUED_AT,
            )
            assert result.token_version == 2


# Userids Tencent's library signs without complaint but our policy refuses, and the words
# the refusal must use to name the rule.
POLICY_BREAKERS = {
    "newline forges a signed line": ("alice\nTLS.sdkappid:1", "U+000A at position 5"),
    "line separator": ("line\u2028sep", "U+2028 at position 4"),
    "over 32 bytes": ("x" * 33, "33 bytes in UTF-8; the limit is 32"),
}


class TestTheirTokensMeetOurUseridPolicy:
    @pytest.mark.parametrize(
        ("userid", "rule"), list(POLICY_BREAKERS.values()), ids=list(POLICY_BREAKERS)
    )
    def test_identifier_breaking_the_policy_is_code_13(
        self, tencent_v2: TLSSigAPIv2.TLSSigAPIv2, userid: str, rule: str
    ) -> None:
        """A genuine Tencent token for a userid we would never sign fails with 13, naming why,
        even when the caller expects exactly that userid."""
        token = tencent_v2.gen_sig(userid, 86400)
        assert decode(token)["TLS.identifier"] == userid
        with pytest.raises(IdentifierMismatch) as info:
            verify(
                token,
                userid=userid,
                sdkappid=1400000000,
                key=HmacSecret.from_text(SECRET_TEXT),
                now=ISSUED_AT,
            )
        assert info.value.code == 13
        assert "userid policy" in info.value.reason and rule in info.value.reason

    def test_a_larger_app_limit_accepts_the_long_userid(
        self, tencent_v2: TLSSigAPIv2.TLSSigAPIv2
    ) -> None:
        """The byte limit is the app's: with 64 bytes allowed, the 33-byte userid verifies."""
        token = tencent_v2.gen_sig("x" * 33, 86400)
        result = verify(
            token,
            userid="x" * 33,
            sdkappid=1400000000,
            key=HmacSecret.from_text(SECRET_TEXT),
            now=ISSUED_AT,
            policy=UserIdPolicy(max_bytes=64),
        )
        assert result.identifier == "x" * 33


GOLDEN = FIXTURES / "golden_v1"


def _golden() -> list[dict[str, object]]:
    data = json.loads((GOLDEN / "golden.json").read_text())
    assert data["made_by"]["tls-sig-api"] == "1.4"
    return list(data["tokens"])


class TestTlsSigApiV1Golden:
    def test_fixture_covers_both_curves_and_both_s_halves(self) -> None:
        kinds = {(t["curve"], t["s"]) for t in _golden()}
        assert kinds == {(c, s) for c in ("prime256v1", "secp256k1") for s in ("low", "high")}

    @pytest.mark.parametrize(
        "record", _golden(), ids=lambda r: f"{r['curve']}-{r['s']}-{r['userid']}"
    )
    def test_golden_token_verifies(self, record: dict[str, object]) -> None:
        """Tokens made by tls-sig-api 1.4 verify with the public key, high-S included."""
        public = load_public_key((GOLDEN / f"{record['curve']}_public_key").read_bytes())
        result = verify(
            str(record["token"]),
            userid=str(record["userid"]),
            sdkappid=int(str(record["sdkappid"])),
            key=public,
            now=int(str(record["issued_at"])) + 1,
        )
        assert result.token_version == 1 and result.time == record["issued_at"]

    @pytest.mark.parametrize("curve", ["prime256v1", "secp256k1"])
    def test_fixture_private_keys_match_public(self, curve: str) -> None:
        """The fixture key files load, and the private half derives the public half."""
        private = load_private_key((GOLDEN / f"{curve}_private_key").read_bytes())
        public = Path(GOLDEN / f"{curve}_public_key").read_bytes()
        assert private.public_key().to_pem() == load_public_key(public).to_pem()
