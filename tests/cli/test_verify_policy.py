"""``signer verify`` holds the token's identifier to the userid policy (code 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import TLSSigAPIv2

from signer.core import Curve, EcPrivateKey, generate_private_key
from tests.cli.test_cli import SDKAPPID, run
from tests.conftest import SECRET_TEXT
from tests.core.hostile import signed_v1


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET_TEXT + "\n")
    return path


@pytest.fixture
def key(tmp_path: Path) -> tuple[EcPrivateKey, Path]:
    """A v1 private key and the file holding its public half."""
    private = generate_private_key(Curve.P256)
    (tmp_path / "public_key").write_bytes(private.public_key().to_pem())
    return private, tmp_path / "public_key"


def _verify(
    capsys: pytest.CaptureFixture[str], userid: str, token: str, *options: str
) -> tuple[int, dict[str, object]]:
    status, out, _ = run(
        capsys, "verify", "--sdkappid", SDKAPPID, "--userid", userid, "--token", token, *options
    )
    return status, json.loads(out)


class TestVerifyUseridPolicy:
    @pytest.mark.parametrize(
        ("userid", "rule"),
        [
            ("alice\nTLS.sdkappid:1", "U+000A at position 5"),
            ("line\u2028sep", "U+2028 at position 4"),
            ("x" * 33, "33 bytes in UTF-8; the limit is 32"),
        ],
    )
    def test_tencent_v2_token_breaking_the_policy_exits_1_with_code_13(
        self, secret_file: Path, capsys: pytest.CaptureFixture[str], userid: str, rule: str
    ) -> None:
        """A Tencent-minted token for a policy-breaking userid is refused with 13 naming the
        rule, even when --userid is that very userid."""
        token = TLSSigAPIv2.TLSSigAPIv2(int(SDKAPPID), SECRET_TEXT).gen_sig(userid, 86400)
        status, report = _verify(capsys, userid, token, "--secret-file", str(secret_file))
        assert (status, report["ok"], report["code"]) == (1, False, 13)
        assert "userid policy" in str(report["reason"]) and rule in str(report["reason"])

    def test_signed_v1_newline_identifier_exits_1_with_code_13(
        self, key: tuple[EcPrivateKey, Path], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A v1 token genuinely signed for a forged-line userid is refused too."""
        private, public_file = key
        userid = "alice\nTLS.sdkappid:1"
        token = signed_v1(private, userid, int(SDKAPPID), 2_000_000_000)
        status, report = _verify(capsys, userid, token, "--public-key", str(public_file))
        assert (status, report["code"]) == (1, 13)
        assert "U+000A at position 5" in str(report["reason"])

    def test_max_userid_bytes_sets_the_limit(
        self, secret_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--max-userid-bytes is the verifying app's limit, as it is when signing."""
        token = TLSSigAPIv2.TLSSigAPIv2(int(SDKAPPID), SECRET_TEXT).gen_sig("x" * 33, 86400)
        secret = ["--secret-file", str(secret_file)]
        status, report = _verify(capsys, "x" * 33, token, *secret)
        assert (status, report["code"]) == (1, 13)
        status, report = _verify(capsys, "x" * 33, token, *secret, "--max-userid-bytes", "64")
        assert (status, report["ok"], report["identifier"]) == (0, True, "x" * 33)

    def test_expected_lone_surrogate_is_named(
        self, secret_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An --userid that is not valid Unicode (a lone surrogate, as undecodable argv
        bytes become) is refused with 13 and named, not reported as a plain mismatch."""
        token = TLSSigAPIv2.TLSSigAPIv2(int(SDKAPPID), SECRET_TEXT).gen_sig("alice", 86400)
        status, report = _verify(capsys, "alice\udcff", token, "--secret-file", str(secret_file))
        assert (status, report["code"]) == (1, 13)
        assert "expected userid" in str(report["reason"])
        assert "lone surrogate" in str(report["reason"])
