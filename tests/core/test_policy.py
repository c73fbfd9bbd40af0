"""The userid policy: what may be signed, and which rule a refusal names."""

from __future__ import annotations

import pytest

from signer.core import InvalidUserId, UserIdPolicy, V2Signer


class TestUserIdPolicy:
    @pytest.mark.parametrize("userid", ["a", "user_0001", "a@b.c-d", "中文", "😀" * 8, "x" * 32])
    def test_accepts_printable_ids_within_32_bytes(self, userid: str) -> None:
        assert UserIdPolicy().check(userid) == userid.encode()

    @pytest.mark.parametrize(
        ("userid", "rule"),
        [
            ("", "empty"),
            ("x" * 33, "too_long"),
            ("😀" * 9, "too_long"),
            ("a\nTLS.sdkappid:1", "control_character"),
            ("tab\there", "control_character"),
            ("nul\x00", "control_character"),
            ("del\x7f", "control_character"),
            ("c1\x85", "control_character"),
            ("line\u2028sep", "control_character"),
            ("lone\ud800", "invalid_unicode"),
        ],
    )
    def test_refusals_name_the_rule(self, userid: str, rule: str) -> None:
        with pytest.raises(InvalidUserId) as info:
            UserIdPolicy().check(userid)
        assert info.value.rule == rule
        assert info.value.field == "userid"

    def test_limit_is_configurable_in_bytes(self) -> None:
        """The limit counts UTF-8 bytes: three CJK characters are nine bytes."""
        with pytest.raises(InvalidUserId, match="9 bytes"):
            UserIdPolicy(max_bytes=8).check("中文字")
        assert UserIdPolicy(max_bytes=64).check("x" * 64)

    def test_signers_enforce_their_policy(self, v2_signer: V2Signer) -> None:
        """A newline-forged userid never reaches the signed text."""
        with pytest.raises(InvalidUserId):
            v2_signer.sign("evil\nTLS.expire:999999999")
