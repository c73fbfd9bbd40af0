"""Sign → verify round trips and the failure codes a verifier reports."""

from __future__ import annotations

import pytest

from signer.core import (
    DEFAULT_EXPIRE,
    FieldError,
    HmacSecret,
    IdentifierMismatch,
    InvalidArgument,
    SdkAppIdMismatch,
    SignatureMismatch,
    TokenExpired,
    V1Signer,
    V2Signer,
    decode,
    generate_private_key,
    pack,
    verify,
)
from tests.conftest import ISSUED_AT, SDKAPPID


class TestVersion1:
    def test_round_trip(self, v1_signer: V1Signer) -> None:
        """A v1 token verifies with the public key and reports what was signed."""
        token = v1_signer.sign("alice", 3600, issued_at=ISSUED_AT)
        result = verify(
            token.usersig,
            userid="alice",
            sdkappid=SDKAPPID,
            key=v1_signer.key.public_key(),
            now=ISSUED_AT + 10,
        )
        assert (result.token_version, result.identifier, result.sdkappid) == (1, "alice", SDKAPPID)
        assert (result.time, result.expire, result.expires_at) == (
            ISSUED_AT,
            3600,
            ISSUED_AT + 3600,
        )
        assert token.expires_at == ISSUED_AT + 3600

    def test_fields_are_strings_as_the_format_fixes(self, v1_signer: V1Signer) -> None:
        """Every v1 JSON value is a string, with the reference constants."""
        fields = decode(v1_signer.sign("bob", issued_at=ISSUED_AT).usersig)
        assert fields["TLS.account_type"] == "0"
        assert fields["TLS.appid_at_3rd"] == "0"
        assert fields["TLS.version"] == "201803230000"
        assert fields["TLS.sdk_appid"] == str(SDKAPPID)
        assert fields["TLS.expire_after"] == str(DEFAULT_EXPIRE)
        assert fields["TLS.time"] == str(ISSUED_AT)
        assert all(isinstance(v, str) for v in fields.values())

    def test_userbuf_is_signed(self, v1_signer: V1Signer) -> None:
        """A v1 userbuf token carries the base64 userbuf and verifies with it."""
        token = v1_signer.sign("carol", 60, b"\x00\x01payload", ISSUED_AT)
        result = verify(
            token.usersig,
            userid="carol",
            sdkappid=SDKAPPID,
            key=v1_signer.key.public_key(),
            now=ISSUED_AT,
        )
        assert result.userbuf == "AAFwYXlsb2Fk"

    def test_wrong_key_is_code_8(self, v1_signer: V1Signer) -> None:
        """A token checked against another key pair's public key fails with code 8."""
        token = v1_signer.sign("dave", issued_at=ISSUED_AT).usersig
        other = generate_private_key(v1_signer.key.curve).public_key()
        with pytest.raises(SignatureMismatch) as info:
            verify(token, userid="dave", sdkappid=SDKAPPID, key=other, now=ISSUED_AT)
        assert info.value.code == 8

    def test_hmac_secret_on_v1_token_is_code_8(
        self, v1_signer: V1Signer, secret: HmacSecret
    ) -> None:
        """Giving a v2 secret for a v1 token says which kind of key was needed."""
        token = v1_signer.sign("erin", issued_at=ISSUED_AT).usersig
        with pytest.raises(SignatureMismatch, match="version 1"):
            verify(token, userid="erin", sdkappid=SDKAPPID, key=secret, now=ISSUED_AT)


class TestVersion2:
    def test_round_trip_with_and_without_userbuf(self, v2_signer: V2Signer) -> None:
        """v2 tokens verify with the same secret, userbuf or not."""
        for userbuf in (None, b"abc"):
            token = v2_signer.sign("frank", 600, userbuf, ISSUED_AT)
            result = verify(
                token.usersig,
                userid="frank",
                sdkappid=SDKAPPID,
                key=v2_signer.secret,
                now=ISSUED_AT + 600,
            )
            assert result.token_version == 2
            assert result.userbuf == (None if userbuf is None else "YWJj")

    def test_fields_have_json_number_types(self, v2_signer: V2Signer) -> None:
        """sdkappid, time and expire are JSON numbers in v2, ver is "2.0"."""
        fields = decode(v2_signer.sign("gina", 100, issued_at=ISSUED_AT).usersig)
        assert fields["TLS.ver"] == "2.0"
        assert (fields["TLS.sdkappid"], fields["TLS.time"], fields["TLS.expire"]) == (
            SDKAPPID,
            ISSUED_AT,
            100,
        )

    def test_other_secret_is_code_8(self, v2_signer: V2Signer) -> None:
        token = v2_signer.sign("hank", issued_at=ISSUED_AT).usersig
        with pytest.raises(SignatureMismatch):
            verify(token, userid="hank", sdkappid=SDKAPPID, key=HmacSecret(b"other"), now=ISSUED_AT)

    def test_public_key_on_v2_token_is_code_8(self, v2_signer: V2Signer) -> None:
        token = v2_signer.sign("ivan", issued_at=ISSUED_AT).usersig
        key = generate_private_key().public_key()
        with pytest.raises(SignatureMismatch, match="version 2"):
            verify(token, userid="ivan", sdkappid=SDKAPPID, key=key, now=ISSUED_AT)


class TestChecks:
    def test_expired_is_code_9_exactly_after_the_last_second(self, v2_signer: V2Signer) -> None:
        """time + expire >= now is still valid; one second later is code 9."""
        token = v2_signer.sign("judy", 100, issued_at=ISSUED_AT).usersig
        verify(token, userid="judy", sdkappid=SDKAPPID, key=v2_signer.secret, now=ISSUED_AT + 100)
        with pytest.raises(TokenExpired) as info:
            verify(
                token, userid="judy", sdkappid=SDKAPPID, key=v2_signer.secret, now=ISSUED_AT + 101
            )
        assert info.value.code == 9

    def test_identifier_mismatch_is_code_13(self, v2_signer: V2Signer) -> None:
        token = v2_signer.sign("kate", issued_at=ISSUED_AT).usersig
        with pytest.raises(IdentifierMismatch) as info:
            verify(token, userid="KATE", sdkappid=SDKAPPID, key=v2_signer.secret, now=ISSUED_AT)
        assert info.value.code == 13

    def test_sdkappid_mismatch_is_code_14(self, v1_signer: V1Signer) -> None:
        token = v1_signer.sign("leo", issued_at=ISSUED_AT).usersig
        with pytest.raises(SdkAppIdMismatch) as info:
            verify(
                token,
                userid="leo",
                sdkappid=SDKAPPID + 1,
                key=v1_signer.key.public_key(),
                now=ISSUED_AT,
            )
        assert info.value.code == 14

    def test_unknown_version_is_code_7(self, secret: HmacSecret) -> None:
        token = pack({"TLS.ver": "3.0", "TLS.identifier": "x"})
        with pytest.raises(FieldError, match=r"TLS\.ver"):
            verify(token, userid="x", sdkappid=SDKAPPID, key=secret)

    def test_escaping_never_breaks_the_token(self, v1_signer: V1Signer) -> None:
        """Quotes, backslashes and emoji in a userid survive the JSON round trip."""
        for userid in ['a"b', "back\\slash", "emoji😀", "中文", "</script>"]:
            token = v1_signer.sign(userid, issued_at=ISSUED_AT).usersig
            assert decode(token)["TLS.identifier"] == userid
            verify(
                token,
                userid=userid,
                sdkappid=SDKAPPID,
                key=v1_signer.key.public_key(),
                now=ISSUED_AT,
            )


class TestSigningArguments:
    @pytest.mark.parametrize("expire", [0, -1, 2**32, True])
    def test_bad_expire_is_refused(self, v2_signer: V2Signer, expire: int) -> None:
        with pytest.raises(InvalidArgument) as info:
            v2_signer.sign("x", expire, issued_at=ISSUED_AT)
        assert info.value.field == "expire"

    def test_lifetime_past_2106_is_refused(self, v2_signer: V2Signer) -> None:
        """time + expire must fit the 32-bit fields on Tencent's side."""
        with pytest.raises(InvalidArgument):
            v2_signer.sign("x", 2**32 - ISSUED_AT, issued_at=ISSUED_AT)

    @pytest.mark.parametrize("sdkappid", [0, -5, 2**32, "1400000001"])
    def test_bad_sdkappid_is_refused(self, secret: HmacSecret, sdkappid: object) -> None:
        with pytest.raises(InvalidArgument) as info:
            V2Signer(sdkappid, secret)  # type: ignore[arg-type]
        assert info.value.field == "sdkappid"

    @pytest.mark.parametrize("issued_at", [True, 1.5, "5"])
    def test_bad_issue_time_is_refused(self, v2_signer: V2Signer, issued_at: object) -> None:
        with pytest.raises(InvalidArgument) as info:
            v2_signer.sign("x", issued_at=issued_at)  # type: ignore[arg-type]
        assert info.value.field == "issued_at"

    def test_userbuf_must_be_bytes(self, v2_signer: V2Signer) -> None:
        with pytest.raises(InvalidArgument, match="bytes"):
            v2_signer.sign("x", userbuf="abc")  # type: ignore[arg-type]

    def test_oversized_userbuf_is_refused(self, v2_signer: V2Signer) -> None:
        with pytest.raises(InvalidArgument, match="userbuf"):
            v2_signer.sign("x", userbuf=b"\0" * 5000)
