"""The end-of-session search of the suite's logs (tests/support/leaks.py) finds what it is
there to find: a key, a secret, an API key or a token in any log under the temp dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer.core import EcPrivateKey, V1Signer, V2Signer
from tests.conftest import SDKAPPID
from tests.support.leaks import collect_secrets, is_token, scan_logs

API_KEY = "ak-7f3c9e21b4d84a6f9c0e"


@pytest.fixture
def deployment(p256_key: EcPrivateKey) -> Iterator[Path]:
    """A deployment's files as the tests write them: a config naming a key file and an
    API key file, and an inline v2 secret. Outside the session's temp dir, whose logs the
    real search reads: the leaks planted here are not the suite's."""
    directory = Path(tempfile.mkdtemp(prefix="planted-leaks-"))
    try:
        yield _write_deployment(directory, p256_key)
    finally:
        shutil.rmtree(directory)


def _write_deployment(tmp_path: Path, p256_key: EcPrivateKey) -> Path:
    (tmp_path / "app.pem").write_bytes(p256_key.to_pem())
    (tmp_path / "caller.txt").write_text(API_KEY + "\n")
    (tmp_path / "signer.toml").write_text(
        f"[[apps]]\nsdkappid = {SDKAPPID}\nalgorithm = 'v1'\nprivate_key_file = 'app.pem'\n"
        "[[apps]]\nsdkappid = 1400000002\nalgorithm = 'v2'\nsecret = 'inline-secret-0123456789'\n"
        "[[auth.callers]]\nname = 'app'\napi_key_file = 'caller.txt'\n"
    )
    return tmp_path


def leaks_with(root: Path, log: str) -> list[str]:
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs" / "signer-1.log").write_text(log)
    return [str(leak) for leak in scan_logs(root, collect_secrets(root))]


def test_clean_logs_have_no_leaks(deployment: Path) -> None:
    """The access lines of a service that logs routes and outcomes, not values."""
    log = '{"event":"request","route":"/v1/usersig","status":200,"caller":"app"}\n'
    assert leaks_with(deployment, log) == []


@pytest.mark.parametrize(
    ("planted", "named"),
    [
        (API_KEY, "auth.callers[0].api_key_file of signer.toml"),
        ("inline-secret-0123456789", "apps[1].secret of signer.toml"),
    ],
)
def test_a_secret_a_config_names_is_found(deployment: Path, planted: str, named: str) -> None:
    """The API key of a file the config names, and an inline secret, with where each is."""
    log = f"line one\nauthenticating with {planted!r}\n"
    assert leaks_with(deployment, log) == [f"logs/signer-1.log:2: {named}"]


def test_a_piece_of_a_private_key_is_found(deployment: Path, p256_key: EcPrivateKey) -> None:
    """One base64 line of the PEM is enough: a traceback that printed part of the key."""
    line = p256_key.to_pem().decode().splitlines()[2]
    assert leaks_with(deployment, f"key: {line}\n") == [
        "logs/signer-1.log:1: apps[0].private_key_file of signer.toml"
    ]


def test_tokens_of_both_versions_are_found(
    deployment: Path, p256_key: EcPrivateKey, v2_signer: V2Signer
) -> None:
    """Any text that decodes as a UserSig, inside JSON or not, with no list of tokens."""
    v1 = V1Signer(SDKAPPID, p256_key).sign("alice").usersig
    v2 = v2_signer.sign("bob").usersig
    log = f'{{"usersig":"{v1}"}}\nretrying {v2} later\n'
    assert leaks_with(deployment, log) == [
        "logs/signer-1.log:1: a UserSig",
        "logs/signer-1.log:2: a UserSig",
    ]


def test_long_words_that_are_not_tokens_are_not_tokens() -> None:
    """Request ids, hashes and base64 of other data are long runs of the same alphabet."""
    assert not is_token("a" * 200)
    assert not is_token("eJzLSM3JyQcABiwCFQ__" + "x" * 60)
