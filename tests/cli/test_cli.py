"""The ``signer`` command line: the exact forms the issue names, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from signer.cli import main
from signer.core import HmacSecret, decode, load_public_key, verify
from tests.conftest import SECRET_TEXT

SDKAPPID = "1400000001"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    status, _, _ = run(capsys, "keygen", "--curve", "prime256v1", "--out", str(tmp_path / "k"))
    assert status == 0
    return tmp_path / "k"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET_TEXT + "\n")
    return path


class TestKeygen:
    @pytest.mark.parametrize("curve", ["prime256v1", "secp256k1"])
    def test_writes_private_and_public_pem(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], curve: str
    ) -> None:
        status, out, _ = run(capsys, "keygen", "--curve", curve, "--out", str(tmp_path))
        assert status == 0 and out == ""
        assert (tmp_path / "private_key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert stat.S_IMODE((tmp_path / "private_key").stat().st_mode) == 0o600
        assert load_public_key((tmp_path / "public_key").read_bytes()).curve.value == curve

    def test_refuses_to_overwrite(self, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
        status, _, err = run(capsys, "keygen", "--out", str(keys))
        assert status != 0 and "--force" in err and err.count("\n") == 1


class TestSignAndVerify:
    def test_v1_sign_prints_token_alone_and_verify_says_ok(
        self, keys: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status, out, _ = run(
            capsys,
            "sign",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "alice",
            "--private-key",
            str(keys / "private_key"),
            "--expire",
            "600",
        )
        token = out.strip()
        assert status == 0 and out == token + "\n"
        for key_option in (
            ["--public-key", str(keys / "public_key")],
            ["--private-key", str(keys / "private_key")],
        ):
            status, out, _ = run(
                capsys,
                "verify",
                "--sdkappid",
                SDKAPPID,
                "--userid",
                "alice",
                *key_option,
                "--token",
                token,
            )
            report = json.loads(out)
            assert status == 0
            assert (report["ok"], report["code"], report["identifier"], report["expire"]) == (
                True,
                0,
                "alice",
                600,
            )

    def test_v2_sign_with_userbuf(
        self, secret_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status, out, _ = run(
            capsys,
            "sign",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "bob",
            "--secret-file",
            str(secret_file),
            "--userbuf-b64",
            "YWJj",
        )
        assert status == 0
        result = verify(
            out.strip(), userid="bob", sdkappid=int(SDKAPPID), key=HmacSecret.from_text(SECRET_TEXT)
        )
        assert result.userbuf == "YWJj"

    def test_secret_from_environment(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SIGNER_SECRET", SECRET_TEXT)
        status, out, _ = run(capsys, "sign", "--sdkappid", SDKAPPID, "--userid", "env")
        assert status == 0
        verify(
            out.strip(), userid="env", sdkappid=int(SDKAPPID), key=HmacSecret.from_text(SECRET_TEXT)
        )

    def test_verify_failure_reports_code_and_exits_1(
        self, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, out, _ = run(
            capsys,
            "sign",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "alice",
            "--private-key",
            str(keys / "private_key"),
            "--issued-at",
            "1000",
            "--expire",
            "10",
        )
        (tmp_path / "token").write_text(out)
        status, out, _ = run(
            capsys,
            "verify",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "alice",
            "--public-key",
            str(keys / "public_key"),
            "--token-file",
            str(tmp_path / "token"),
        )
        report = json.loads(out)
        assert status == 1 and report["ok"] is False and report["code"] == 9
        status, out, _ = run(
            capsys,
            "verify",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "alice",
            "--public-key",
            str(keys / "public_key"),
            "--token-file",
            str(tmp_path / "token"),
            "--now",
            "1005",
        )
        assert status == 0 and json.loads(out)["ok"] is True

    def test_privatemapkey(self, secret_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        for room in (["--room-id", "1234"], ["--room-str", "房间"]):
            status, out, _ = run(
                capsys,
                "privatemapkey",
                "--sdkappid",
                SDKAPPID,
                "--userid",
                "u",
                "--secret-file",
                str(secret_file),
                *room,
                "--privilege",
                "7",
            )
            assert status == 0
            status, out, _ = run(
                capsys,
                "verify",
                "--sdkappid",
                SDKAPPID,
                "--userid",
                "u",
                "--secret-file",
                str(secret_file),
                "--token",
                out.strip(),
            )
            assert json.loads(out)["privilege_map"]["privilege"] == 7

    def test_decode_prints_fields(
        self, secret_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, out, _ = run(
            capsys,
            "sign",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "d",
            "--secret-file",
            str(secret_file),
        )
        status, out2, _ = run(capsys, "decode", "--token", out.strip())
        assert status == 0 and json.loads(out2) == decode(out.strip())


class TestErrors:
    @pytest.mark.parametrize(
        ("argv", "needle"),
        [
            (
                ["sign", "--sdkappid", SDKAPPID, "--userid", "u", "--secret-value", "x"],
                "not taken as arguments",
            ),
            (["sign", "--sdkappid", SDKAPPID, "--userid", "a\nb"], "control character"),
            (["sign", "--sdkappid", SDKAPPID, "--userid", "x" * 40], "limit is 32"),
            (["sign", "--sdkappid", "0", "--userid", "u"], "sdkappid"),
            (
                ["sign", "--sdkappid", SDKAPPID, "--userid", "u", "--secret-file", "/nonexistent"],
                "cannot read",
            ),
            (
                ["sign", "--sdkappid", SDKAPPID, "--userid", "u", "--userbuf-b64", "%%"],
                "base64",
            ),
            (
                ["privatemapkey", "--sdkappid", SDKAPPID, "--userid", "u"],
                "--room-id",
            ),
            (["decode", "--token", "garbage!"], "code 2"),
            (["verify", "--sdkappid", SDKAPPID, "--userid", "u", "--token", "x"], "exactly one"),
            (["nosuchcommand"], "No such command"),
        ],
    )
    def test_one_line_error_and_nonzero_exit(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        argv: list[str],
        needle: str,
    ) -> None:
        monkeypatch.setenv("SIGNER_SECRET", "x")
        status, out, err = run(capsys, *argv)
        assert status != 0 and out == ""
        assert err.startswith("signer: error:") and err.count("\n") == 1
        assert needle in err

    def test_bad_key_file_names_problem_without_echoing_it(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "key").write_text(
            "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRET\n-----END RSA PRIVATE KEY-----\n"
        )
        status, _, err = run(
            capsys,
            "sign",
            "--sdkappid",
            SDKAPPID,
            "--userid",
            "u",
            "--private-key",
            str(tmp_path / "key"),
        )
        assert status == 2 and "not an EC key" in err and "TOPSECRET" not in err


@pytest.mark.parametrize("command", ["keygen", "sign", "privatemapkey", "verify", "decode"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    status, out, _ = run(capsys, command, "--help")
    assert status == 0 and "Usage:" in out


def test_python_dash_m_and_console_script(tmp_path: Path) -> None:
    """`python -m signer` and the installed `signer` script both run the CLI."""
    env = {**os.environ, "SIGNER_SECRET": SECRET_TEXT}
    for argv in ([sys.executable, "-m", "signer"], [str(Path(sys.executable).parent / "signer")]):
        result = subprocess.run(
            [*argv, "sign", "--sdkappid", SDKAPPID, "--userid", "x"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert decode(result.stdout.strip())["TLS.identifier"] == "x"


def test_no_key_at_all(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNER_SECRET", raising=False)
    status, _, err = run(capsys, "sign", "--sdkappid", SDKAPPID, "--userid", "u")
    assert status == 2 and "no key" in err


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":1.5}',
        b'{"a":99999999999999999999}',
        b'{"a":["\\ud800"]}',
        b'{"a":' + b"9" * 50 + b"}",
    ],
)
def test_decode_prints_odd_values_without_a_traceback(
    capsys: pytest.CaptureFixture[str], payload: bytes
) -> None:
    """Fractions, huge integers and lone surrogates in a token still print as JSON."""
    from tests.core.hostile import wrap

    status, out, err = run(capsys, "decode", "--token", wrap(payload))
    assert status == 0 and err == ""
    assert "a" in json.loads(out)
