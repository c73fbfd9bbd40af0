"""``[server] processes = "auto"``, the default: one HTTP process per core when a shared
cache is configured, one otherwise, and start-up says which it chose."""

from __future__ import annotations

import pytest

from signer.config import Settings, engine_settings
from signer.config.settings import CacheSettings, ServerSettings
from signer.engine.cpus import usable_cpus

REDIS = CacheSettings(url="redis://127.0.0.1:6379/0")


class TestAuto:
    def test_with_a_shared_cache_it_is_one_process_per_usable_cpu(self) -> None:
        """Catches: "auto" left at one process where several could share Redis (one event
        loop is the limit of a process: the other cores would idle), or counting the
        machine's cores rather than the CPUs this process may use (tests/engine/test_cpus)."""
        settings = Settings(cache=REDIS)
        assert settings.server.processes == "auto"
        assert settings.processes == min(64, usable_cpus())
        chosen = f"auto: one per usable CPU ({usable_cpus()}), with a shared cache"
        assert settings.processes_chosen() == chosen

    def test_without_one_it_is_a_single_process(self) -> None:
        """Catches: several processes with in-memory caches, which cache nothing (a DELETE
        on one could not reach the others)."""
        settings = Settings()
        assert settings.processes == 1
        assert "no [cache] url" in settings.processes_chosen()

    @pytest.mark.parametrize("count", [1, 3])
    def test_a_configured_count_wins(self, count: int) -> None:
        """Catches: "auto" applied over an explicit ``processes``."""
        settings = Settings(server=ServerSettings(processes=count), cache=REDIS)
        assert settings.processes == count
        assert settings.processes_chosen() == "configured ([server] processes)"

    def test_the_engine_shares_the_cores_among_the_chosen_processes(self) -> None:
        """With "auto" and a shared cache, each process's engine gets its share of the
        cores (at least two workers), as with the same count configured.

        Catches: the engine sizing itself from the raw setting ("auto" is not a number)."""
        auto = engine_settings(Settings(cache=REDIS))
        count = Settings(cache=REDIS).processes
        explicit = engine_settings(Settings(server=ServerSettings(processes=count), cache=REDIS))
        assert auto.workers == explicit.workers
