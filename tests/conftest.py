"""Shared fixtures: keys on both curves, a v2 secret, and a pinned clock value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from signer.core import (
    Curve,
    EcPrivateKey,
    HmacSecret,
    V1Signer,
    V2Signer,
    generate_private_key,
)
from tests.support import RedisServer
from tests.support.leaks import LeakWatch

FIXTURES = Path(__file__).parent / "fixtures"
ISSUED_AT = 1_700_000_000
SDKAPPID = 1400000001
SECRET_TEXT = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"


@pytest.fixture(scope="session", params=[Curve.P256, Curve.SECP256K1], ids=lambda c: c.value)
def ec_key(request: pytest.FixtureRequest) -> EcPrivateKey:
    """A private key on each supported curve."""
    return generate_private_key(request.param)


@pytest.fixture(scope="session")
def p256_key() -> EcPrivateKey:
    return generate_private_key(Curve.P256)


@pytest.fixture(scope="session")
def secret() -> HmacSecret:
    return HmacSecret.from_text(SECRET_TEXT)


@pytest.fixture
def v1_signer(ec_key: EcPrivateKey) -> V1Signer:
    return V1Signer(SDKAPPID, ec_key)


@pytest.fixture
def v2_signer(secret: HmacSecret) -> V2Signer:
    return V2Signer(SDKAPPID, secret)


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin's, which makes the temp dir
def pytest_configure(config: pytest.Config) -> None:
    """The search of every log for secrets and tokens once the session ends
    (:mod:`tests.support.leaks`); this process's log events are recorded for it."""
    watch = LeakWatch(
        config._tmp_path_factory.getbasetemp(),  # type: ignore[attr-defined]
        [(SECRET_TEXT, "the suite's HMAC secret")],
    )
    config.pluginmanager.register(watch, "leak-watch")
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[watch.structlog_processor, *processors])


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers a test cannot forget: every test using ``redis_server`` (itself or
    through another fixture) is ``redis``, and every ``processes`` test is ``slow`` (a
    ``signer serve`` subprocess takes about a second to start, with its signing worker)."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
        if item.get_closest_marker("processes") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a free port, stopped by pid afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
