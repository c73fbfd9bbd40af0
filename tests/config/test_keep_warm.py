"""``keep_warm_days`` and ``[keep_warm]``: off by default, and a configuration that could
never keep anything warm refused at start-up with one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.config import ConfigError, Settings, load_settings

APP = """
[[apps]]
sdkappid = 1400000001
algorithm = "v2"
secret = "s"
default_expire = 86400
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "signer.toml"
    path.write_text(text)
    return load_settings(path)


class TestKeepWarmSettings:
    def test_off_by_default(self, tmp_path: Path) -> None:
        """An app says nothing of keep-warm: it is off, and the loop's defaults stand.

        Catches: a default that turns keep-warm on for every app."""
        settings = load(tmp_path, APP)
        assert settings.apps[0].keep_warm_days == 0
        assert (settings.keep_warm.rate, settings.keep_warm.spread) == (100.0, 0.25)

    def test_on_with_a_shared_cache(self, tmp_path: Path) -> None:
        """With a [cache] url, keep_warm_days and the loop's pace are taken as given.

        Catches: a valid keep-warm configuration refused."""
        text = APP + 'keep_warm_days = 7\n[cache]\nurl = "redis://h:6379/0"\n'
        text += "[keep_warm]\nrate = 250\nspread = 0.5\nclaim = 30\ninterval = 2\n"
        settings = load(tmp_path, text)
        assert settings.apps[0].keep_warm_days == 7
        assert settings.keep_warm.rate == 250 and settings.keep_warm.claim == 30

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                APP + "keep_warm_days = 7\n",
                "apps[0].keep_warm_days: keep-warm needs a shared cache",
            ),
            (
                APP.replace("86400", "7200") + 'keep_warm_days = 1\n[cache]\nurl = "redis://h/0"\n',
                "apps[0].keep_warm_days: default_expire (7200 s) must be longer than",
            ),
            (APP + "keep_warm_days = -1\n", "apps[0].keep_warm_days: Input should be greater"),
            (APP + "keep_warm_days = 400\n", "apps[0].keep_warm_days: Input should be less"),
            (APP + "[keep_warm]\nrate = 0\n", "keep_warm.rate: Input should be greater than 0"),
            (APP + "[keep_warm]\nspread = 1\n", "keep_warm.spread: Input should be less"),
            (APP + "[keep_warm]\nburst = 3\n", "keep_warm.burst: Extra inputs are not permitted"),
        ],
    )
    def test_what_cannot_work_is_refused_naming_the_field(
        self, tmp_path: Path, text: str, expected: str
    ) -> None:
        """Keep-warm without a shared cache, with tokens shorter than refresh_ahead, or
        with a setting out of range or unknown: ConfigError, one line naming the field.

        Catches: a keep-warm that silently does nothing (memory cache) or re-signs every
        token as soon as it is signed."""
        with pytest.raises(ConfigError) as raised:
            load(tmp_path, text)
        assert any(expected in line for line in raised.value.problems), raised.value.problems
