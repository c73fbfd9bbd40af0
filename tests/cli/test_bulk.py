"""``signer bulk``: every record verifies, input order is kept, bad userids are reported."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from signer.core import Curve, HmacSecret, generate_private_key, load_public_key, verify
from tests.conftest import SECRET_TEXT

SDKAPPID = "1400000001"


def bulk(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `signer bulk` as users do: a real process with real worker processes."""
    return subprocess.run(
        [sys.executable, "-m", "signer", "bulk", "--sdkappid", SDKAPPID, "--workers", "2", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bulk-keys")
    key = generate_private_key(Curve.P256)
    (path / "private_key").write_bytes(key.to_pem())
    (path / "public_key").write_bytes(key.public_key().to_pem())
    (path / "secret").write_text(SECRET_TEXT)
    return path


class TestBulk:
    def test_generated_userids_all_verify_in_order(self, key_dir: Path) -> None:
        """--count N writes N records, <prefix><n> in order, every token valid (v1)."""
        result = bulk(
            "--private-key",
            str(key_dir / "private_key"),
            "--count",
            "3000",
            "--prefix",
            "load_",
            "--chunk",
            "128",
        )
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["userid"] for r in records] == [f"load_{n}" for n in range(3000)]
        public = load_public_key((key_dir / "public_key").read_bytes())
        for record in records:
            checked = verify(
                record["usersig"], userid=record["userid"], sdkappid=int(SDKAPPID), key=public
            )
            assert (checked.time, checked.expires_at) == (record["issued_at"], record["expires_at"])
        summary = result.stderr.decode().strip().splitlines()[-1]
        assert "3000 tokens, 0 errors" in summary and "tokens/s" in summary

    def test_file_input_keeps_bad_userids_as_error_records(
        self, key_dir: Path, tmp_path: Path
    ) -> None:
        """A userid that breaks the policy becomes an error record, never a silent drop."""
        lines = ["alice", "", "x" * 40, "bob", "中文"]
        (tmp_path / "ids").write_text("\n".join(lines) + "\n")
        out = tmp_path / "out.jsonl"
        result = bulk(
            "--secret-file",
            str(key_dir / "secret"),
            "--userids-file",
            str(tmp_path / "ids"),
            "--out",
            str(out),
        )
        assert result.returncode == 1
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["userid"] for r in records] == lines
        assert records[1]["error"]["rule"] == "empty"
        assert records[2]["error"]["rule"] == "too_long"
        for record in (records[0], records[3], records[4]):
            verify(
                record["usersig"],
                userid=record["userid"],
                sdkappid=int(SDKAPPID),
                key=HmacSecret.from_text(SECRET_TEXT),
            )
        assert "3 tokens, 2 errors" in result.stderr.decode()

    def test_strict_stops_at_first_bad_userid(self, key_dir: Path) -> None:
        result = bulk(
            "--secret-file",
            str(key_dir / "secret"),
            "--userids-file",
            "-",
            "--strict",
            stdin=b"a\nb\nbad\x07id\nc\n",
        )
        assert result.returncode == 2
        assert [json.loads(x)["userid"] for x in result.stdout.splitlines()] == ["a", "b"]
        err = result.stderr.decode()
        assert err.count("\n") == 1 and "control character" in err

    def test_csv_output(self, key_dir: Path) -> None:
        result = bulk("--secret-file", str(key_dir / "secret"), "--count", "50", "--format", "csv")
        assert result.returncode == 0
        rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
        assert len(rows) == 50 and rows[0]["userid"] == "user_0"
        verify(
            rows[49]["usersig"],
            userid="user_49",
            sdkappid=int(SDKAPPID),
            key=HmacSecret.from_text(SECRET_TEXT),
        )

    def test_needs_exactly_one_source(self, key_dir: Path) -> None:
        result = bulk("--secret-file", str(key_dir / "secret"))
        assert (
            result.returncode == 2 and b"exactly one of --userids-file and --count" in result.stderr
        )
