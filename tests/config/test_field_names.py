"""Every problem with a file a config names is reported under that file's field, in the
config's own spelling (``apps[0].secret_file``), as the README promises; and a v2 secret
that is really a PEM key is refused at start-up instead of signing with its text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from signer.config import ConfigError, build_runtime, load_settings
from signer.core import Curve, generate_private_key

V1_APP, V2_APP = 1400000001, 1400000002


@pytest.fixture(autouse=True)
def _no_signer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SIGNER_"):
            monkeypatch.delenv(name)


def problems(tmp_path: Path, apps: str) -> list[str]:
    """The problems ``signer serve`` would report for a config made of ``apps``."""
    config = tmp_path / "signer.toml"
    config.write_text(apps + "\n[auth]\ndisabled = true\n")
    with pytest.raises(ConfigError) as info:
        build_runtime(load_settings(config))
    return info.value.problems


@pytest.fixture
def pem(tmp_path: Path) -> str:
    key = generate_private_key(Curve.P256)
    (tmp_path / "private_key").write_bytes(key.to_pem())
    (tmp_path / "public_key").write_bytes(key.public_key().to_pem())
    (tmp_path / "junk").write_text("not a key\n")
    return key.to_pem().decode()


def test_a_missing_key_file_names_its_field(tmp_path: Path) -> None:
    """A key file that is not there is reported as ``apps[0].private_key_file: cannot read``.

    Catches: a missing key file reported without the field that names it."""
    text = f'[[apps]]\nsdkappid = {V1_APP}\nalgorithm = "v1"\nprivate_key_file = "nope"'
    assert problems(tmp_path, text) == [
        f"apps[0].private_key_file: cannot read {tmp_path / 'nope'}: No such file or directory"
    ]


@pytest.mark.usefixtures("pem")
@pytest.mark.parametrize(
    ("apps", "field"),
    [
        (
            f'[[apps]]\nsdkappid = {V1_APP}\nalgorithm = "v1"\nprivate_key_file = "junk"',
            "apps[0].private_key_file",
        ),
        (
            f'[[apps]]\nsdkappid = {V1_APP}\nalgorithm = "v1"\nprivate_key_file = "public_key"',
            "apps[0].private_key_file",
        ),
        (
            f'[[apps]]\nsdkappid = {V1_APP}\nalgorithm = "v1"\nprivate_key_file = "private_key"'
            '\n[[apps.previous_keys]]\nversion = "0"\npublic_key_file = "junk"',
            "apps[0].previous_keys[0].public_key_file",
        ),
        (
            f'[[apps]]\nsdkappid = {V2_APP}\nalgorithm = "v2"\nsecret_file = "empty"',
            "apps[0].secret_file",
        ),
    ],
    ids=["not-pem", "public-as-private", "previous-key", "empty-secret"],
)
def test_a_key_file_with_bad_contents_names_its_field(
    tmp_path: Path, apps: str, field: str
) -> None:
    """A file that is there but holds no usable key is reported under that file's field.

    Catches: such problems reported under the app alone (``apps[0]: no PEM block``),
    leaving the reader to guess which of the app's files is meant."""
    (tmp_path / "empty").write_text("\n")
    found = problems(tmp_path, apps)
    assert len(found) == 1 and found[0].startswith(field + ": "), found


def test_a_pem_key_as_secret_file_is_refused(tmp_path: Path, pem: str) -> None:
    """A v2 app whose ``secret_file`` holds a PEM key stops start-up, naming the field.

    Catches: a v1 key named as a v2 secret, the service then signing with the PEM's text."""
    text = f'[[apps]]\nsdkappid = {V2_APP}\nalgorithm = "v2"\nsecret_file = "private_key"'
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("apps[0].secret_file: this is a PEM key")
    assert pem.splitlines()[1] not in found[0]


def test_a_pem_key_as_inline_secret_is_refused(
    tmp_path: Path, pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 app's inline ``secret`` (from the environment) holding a PEM key is refused too.

    Catches: the inline path of the v2 secret skipping the PEM check."""
    app = {"sdkappid": V2_APP, "algorithm": "v2", "secret": pem}
    monkeypatch.setenv("SIGNER_APPS", json.dumps([app]))
    monkeypatch.setenv("SIGNER_AUTH__DISABLED", "true")
    with pytest.raises(ConfigError) as info:
        build_runtime(load_settings(None))
    assert [p.split(":")[0] for p in info.value.problems] == ["apps[0].secret"]


def test_settings_problems_use_the_configs_spelling(tmp_path: Path) -> None:
    """A field the settings reject inside a list is named ``apps[0].private_key``, as the
    runtime's problems are, not pydantic's ``apps.0.private_key``.

    Catches: one config reporting the same app as apps.0 and as apps[0]."""
    text = f'[[apps]]\nsdkappid = {V1_APP}\nalgorithm = "v1"\nprivate_key = "x"'
    config = tmp_path / "signer.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert [p.split(":")[0] for p in info.value.problems] == ["apps[0].private_key"]
