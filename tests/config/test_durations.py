"""Durations in the configuration: one unit (seconds) for all of them, the names of the
previous release still read for one release with a warning, and one source of defaults
for the engine's tuning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from signer.config import ConfigError, Runtime, Settings, engine_settings, load_settings
from signer.config.settings import EngineConfig
from signer.engine import EngineSettings, KeySet
from signer.service.server import announce

OLD_NAMES = """
[engine]
max_delay_ms = 3

[cache]
timeout_ms = 20
breaker_reset_s = 1.5
lease_ms = 2500
lease_wait_ms = 400
l1_ttl_s = 7
"""


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signer.toml"
    path.write_text(text)
    return path


class TestPreviousNames:
    def test_are_read_in_their_old_unit_and_converted_to_seconds(self, tmp_path: Path) -> None:
        """Every duration name of the previous release still configures its setting, in
        the unit its name says, and each one used is listed for the start-up warning.

        Catches: an old name refused (a config written for the previous release would stop
        the service), or read without its conversion (``timeout_ms = 20`` as 20 s)."""
        settings = load_settings(config(tmp_path, OLD_NAMES))
        cache = settings.cache
        assert (cache.timeout, cache.breaker_reset, cache.lease) == (0.02, 1.5, 2.5)
        assert (cache.lease_wait, cache.l1_ttl) == (0.4, 7)
        assert settings.engine.max_delay == 0.003
        assert sorted(settings.deprecated_names()) == [
            "cache.breaker_reset_s -> breaker_reset (seconds)",
            "cache.l1_ttl_s -> l1_ttl (seconds)",
            "cache.lease_ms -> lease (seconds)",
            "cache.lease_wait_ms -> lease_wait (seconds)",
            "cache.timeout_ms -> timeout (seconds)",
            "engine.max_delay_ms -> max_delay (seconds)",
        ]

    def test_are_read_from_the_environment_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``SIGNER_CACHE__TIMEOUT_MS=20`` is 0.02 s, as in the file.

        Catches: the conversion done only for the TOML file (the environment's string
        taken as seconds, or refused)."""
        monkeypatch.setenv("SIGNER_CACHE__TIMEOUT_MS", "20")
        settings = load_settings(config(tmp_path, "[cache]\n"))
        assert settings.cache.timeout == 0.02
        assert settings.deprecated_names() == ["cache.timeout_ms -> timeout (seconds)"]

    def test_an_old_and_a_new_name_for_one_setting_is_an_error_naming_both(
        self, tmp_path: Path
    ) -> None:
        """Given ``timeout`` and ``timeout_ms``, which one was meant is unknown: the
        configuration is refused, naming the section and both names.

        Catches: one of the two silently winning."""
        with pytest.raises(ConfigError) as error:
            load_settings(config(tmp_path, "[cache]\ntimeout = 0.1\ntimeout_ms = 50\n"))
        (problem,) = error.value.problems
        assert problem.startswith("cache:") and "timeout_ms" in problem and "timeout (" in problem

    def test_new_names_need_no_warning(self, tmp_path: Path) -> None:
        """Catches: a warning for a configuration that uses only the current names."""
        text = "[engine]\nmax_delay = 0.004\n[cache]\ntimeout = 0.03\nlease = 1\n"
        settings = load_settings(config(tmp_path, text))
        assert (settings.engine.max_delay, settings.cache.timeout) == (0.004, 0.03)
        assert settings.deprecated_names() == []

    def test_start_up_warns_once_naming_each(self, tmp_path: Path) -> None:
        """The start-up announcement carries one warning listing every old name used.

        Catches: old names accepted without a word (they stop working in the next release,
        and nothing would have said so)."""
        settings = load_settings(config(tmp_path, OLD_NAMES))
        runtime = Runtime(settings=settings, apps={}, callers=(), keyset=KeySet.of([]))
        with capture_logs() as logs:
            announce(runtime)
        warnings = [line for line in logs if "earlier release" in line["event"]]
        assert len(warnings) == 1
        assert len(warnings[0]["settings"]) == 6


class TestEngineDefaults:
    def test_the_file_and_the_engine_share_one_set_of_defaults(self) -> None:
        """An ``[engine]`` section left out runs the engine with EngineSettings' own
        defaults, field by field (workers: the cores).

        Catches: a default changed in one of the two places only (``inline_v2_max`` was 32
        in the engine and 0 in the file)."""
        assert engine_settings(Settings()) == EngineSettings()

    def test_every_engine_setting_is_configurable(self) -> None:
        """Catches: a tuning field added to EngineSettings that the file cannot set (only
        ``in_flight_per_worker`` is internal)."""
        engine = {f.name for f in dataclasses.fields(EngineSettings)}
        assert engine - set(EngineConfig.model_fields) == {"in_flight_per_worker"}
