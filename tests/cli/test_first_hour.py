"""A new user's first hour with the command line (issue 11): commands printed for them work
as printed, keygen makes v2 secrets too, and a PEM key given as a v2 secret is refused."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from signer.cli import main
from signer.core import HmacSecret, verify
from signer.core import generate_private_key as new_key

SDKAPPID = "1400000002"
SYSTEM_PATH = "/usr/bin:/bin"  # where a fresh shell finds no .venv/bin/signer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, dict[str, object]]]:
    """``signer serve`` with no configuration, the service itself replaced by a recorder."""
    for name in list(os.environ):
        if name.upper().startswith("SIGNER_"):
            monkeypatch.delenv(name)
    calls: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(
        "signer.service.main.run", lambda path, overrides: calls.append((path, overrides))
    )
    return calls


class TestCommandsPrintedForTheUser:
    def test_serve_without_signer_on_path_prints_a_command_that_runs_as_printed(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        no_config: list[tuple[object, dict[str, object]]],
    ) -> None:
        """With `signer` not on PATH (as after `bash scripts/serve`), dev-mode `signer serve`
        names the command line in a form that runs, typed as printed, from such a shell.

        Catches: the start-up output telling a new user to run `signer verify ...`, a
        command their shell cannot find."""
        monkeypatch.setenv("PATH", SYSTEM_PATH)
        status, _, err = run(capsys, "serve")
        assert status == 0 and no_config == [(None, {})]
        assert "not on PATH" in err, err
        command = err.split("run the command line as ", 1)[1].split(" (e.g. ", 1)[0]
        assert command != "signer"
        result = subprocess.run(
            [*shlex.split(command), "verify", "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": SYSTEM_PATH},
            check=False,
        )
        assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr

    def test_serve_with_signer_on_path_adds_nothing(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        no_config: list[tuple[object, dict[str, object]]],
    ) -> None:
        """When `signer` on PATH is this installation, the printed `signer ...` is right as
        it is, and serve says nothing more.

        Catches: the PATH hint printed to users whose `signer` already works."""
        script = Path(sys.executable).parent / "signer"
        if not script.exists():
            pytest.skip("this interpreter has no signer script next to it")
        monkeypatch.setenv("PATH", f"{script.parent}:{SYSTEM_PATH}")
        status, _, err = run(capsys, "serve")
        assert status == 0 and err == ""


class TestKeygenV2:
    def test_writes_a_private_random_secret_that_signs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`keygen --kind v2` writes DIR/secret: 32 random bytes as hex, mode 0600, usable
        as --secret-file; two runs give two different secrets.

        Catches: keygen unable to make a v2 secret, or writing one others may read."""
        secrets_seen = set()
        for name in ("a", "b"):
            status, out, err = run(capsys, "keygen", "--kind", "v2", "--out", str(tmp_path / name))
            assert status == 0 and out == "" and "secret" in err
            path = tmp_path / name / "secret"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            text = path.read_text().strip()
            assert len(bytes.fromhex(text)) == 32
            secrets_seen.add(text)
            status, out, _ = run(
                capsys, "sign", "--sdkappid", SDKAPPID, "--userid", "u", "--secret-file", str(path)
            )
            assert status == 0
            verify(out.strip(), userid="u", sdkappid=int(SDKAPPID), key=HmacSecret.from_text(text))
        assert len(secrets_seen) == 2

    def test_refuses_to_overwrite_a_secret_without_force(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An existing DIR/secret is kept unless --force is given, as keygen keeps keys.

        Catches: keygen --kind v2 silently replacing an app's secret in use."""
        assert run(capsys, "keygen", "--kind", "v2", "--out", str(tmp_path))[0] == 0
        before = (tmp_path / "secret").read_text()
        status, _, err = run(capsys, "keygen", "--kind", "v2", "--out", str(tmp_path))
        assert status == 2 and "--force" in err and err.count("\n") == 1
        assert (tmp_path / "secret").read_text() == before
        assert run(capsys, "keygen", "--kind", "v2", "--force", "--out", str(tmp_path))[0] == 0
        assert (tmp_path / "secret").read_text() != before
        assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600

    def test_a_curve_makes_no_sense_for_a_secret(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--kind v2 --curve ...` is a usage error, and writes nothing.

        Catches: a v2 run quietly ignoring a --curve that shows the user meant a v1 key."""
        status, _, err = run(
            capsys, "keygen", "--kind", "v2", "--curve", "secp256k1", "--out", str(tmp_path / "k")
        )
        assert status == 2 and "--curve" in err
        assert not (tmp_path / "k").exists()

    def test_v1_stays_the_default(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --kind, keygen still writes the EC key pair and no secret.

        Catches: --kind changing what a plain `signer keygen --out DIR` makes."""
        assert run(capsys, "keygen", "--out", str(tmp_path))[0] == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["private_key", "public_key"]


class TestPemKeyAsSecret:
    @pytest.mark.parametrize("command", ["sign", "bulk"])
    def test_secret_file_holding_a_pem_key_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
    ) -> None:
        """`--secret-file` naming a PEM private key stops with one line saying so, exit 2,
        nothing signed and nothing of the key echoed.

        Catches: a v1 private key given as the v2 secret, signing tokens with its PEM text
        that no real v2 verifier accepts."""
        pem = new_key().to_pem()
        (tmp_path / "key").write_bytes(pem)
        extra = ["--count", "1"] if command == "bulk" else ["--userid", "u"]
        status, out, err = run(
            capsys, command, "--sdkappid", SDKAPPID, *extra, "--secret-file", str(tmp_path / "key")
        )
        assert status == 2 and out == ""
        assert "PEM key, not a v2 secret" in err and err.count("\n") == 1
        body = pem.decode().splitlines()[1]
        assert body not in err

    def test_secret_variable_holding_a_pem_key_is_refused(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SIGNER_SECRET holding a PEM key (leading whitespace or not) is refused the same way.

        Catches: the environment path of the v2 secret skipping the PEM check."""
        monkeypatch.setenv("SIGNER_SECRET", "\n  " + new_key().to_pem().decode())
        status, out, err = run(capsys, "sign", "--sdkappid", SDKAPPID, "--userid", "u")
        assert status == 2 and out == "" and "SIGNER_SECRET: this is a PEM key" in err
