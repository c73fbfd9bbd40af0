"""``signer warm``: fills the configured Redis at a bounded rate, counts what it did, and
refuses what it cannot do with one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service.conftest import V2_APP, Deployment, make_deployment, write_config
from tests.support import RedisServer


def warm(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run `signer warm` as operators do: a real process with real worker processes."""
    return subprocess.run(
        [sys.executable, "-m", "signer", "warm", "--config", str(config), "--workers", "1", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(tmp_path)


@pytest.fixture
def config(deployment: Deployment, redis_server: RedisServer) -> Path:
    return write_config(
        deployment.directory,
        name="warm.toml",
        apps={V2_APP: {"keep_warm_days": 3}},
        cache={"url": redis_server.url, "timeout": 0.5},
    )


@pytest.mark.slow
class TestWarm:
    def test_fills_redis_at_the_bounded_rate(self, config: Path, redis_server: RedisServer) -> None:
        """60 users at 40 a second take at least 1.5 s, are all signed into Redis and
        tracked by keep-warm; a second run finds them all already warm.

        Catches: --rate not bounding the run; tokens signed but not stored."""
        start = time.monotonic()
        first = warm(
            config, "--sdkappid", str(V2_APP), "--count", "60", "--prefix", "w_", "--rate", "40"
        )
        elapsed = time.monotonic() - start
        assert first.returncode == 0, first.stderr
        assert "60 signed, 0 already warm, 0 refused" in first.stderr
        assert elapsed >= 1.5
        keys = redis_server.cli("--scan", "--pattern", f"signer:{{{V2_APP}:w_*").split()
        assert len(keys) == 60
        assert redis_server.cli("ZCARD", f"signer:kw:{{kw:{V2_APP}}}:due") == "60"
        second = warm(config, "--sdkappid", str(V2_APP), "--count", "60", "--prefix", "w_")
        assert second.returncode == 0 and "0 signed, 60 already warm" in second.stderr

    def test_refused_userids_are_named_and_exit_1(self, config: Path, tmp_path: Path) -> None:
        """A userid the app's policy refuses is counted, named on stderr, and the run
        exits 1; the others are signed.

        Catches: a refused userid failing the whole run, or passing unreported."""
        userids = tmp_path / "userids"
        userids.write_text("ok1\n" + "x" * 40 + "\nok2\n")
        result = warm(config, "--sdkappid", str(V2_APP), "--userids-file", str(userids))
        assert result.returncode == 1
        assert "2 signed, 0 already warm, 1 refused" in result.stderr
        assert "refused userid 'xxxxxxxx" in result.stderr

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--count", "5", "--userids-file", "-"], "exactly one of --userids-file and --count"),
            (["--count", "5", "--expire", "10"], "--expire must be between"),
        ],
    )
    def test_bad_input_exits_2(self, config: Path, argv: list[str], message: str) -> None:
        """Catches: bad input reaching Redis or the signers."""
        result = warm(config, "--sdkappid", str(V2_APP), *argv)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_needs_a_shared_cache_and_a_known_app(self, deployment: Deployment) -> None:
        """Without a [cache] url, or for an app not in the configuration: exit 2, one line.

        Catches: warming an in-memory cache that vanishes with the command."""
        result = warm(deployment.config, "--sdkappid", str(V2_APP), "--count", "1")
        assert result.returncode == 2 and "has no [cache] url" in result.stderr
        config = write_config(
            deployment.directory, name="r.toml", cache={"url": "redis://127.0.0.1:1/0"}
        )
        unknown = warm(config, "--sdkappid", "1400009999", "--count", "1")
        assert unknown.returncode == 2 and "is not an app of" in unknown.stderr
        down = warm(config, "--sdkappid", str(V2_APP), "--count", "1")
        assert down.returncode == 2 and "does not answer" in down.stderr
