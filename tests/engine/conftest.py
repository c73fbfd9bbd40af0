"""Engine fixtures: a real process pool with a v1 (P-256) app and a v2 app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signer.core import Curve, EcPrivateKey, HmacSecret, generate_private_key
from signer.engine import AppKey, Engine, EngineSettings, KeySet

V1_APP = 1400000001
V2_APP = 1400000002


@pytest.fixture(scope="session")
def v1_key() -> EcPrivateKey:
    return generate_private_key(Curve.P256)


@pytest.fixture(scope="session")
def v2_secret() -> HmacSecret:
    return HmacSecret(b"engine-test-secret")


@pytest.fixture(scope="session")
def keyset(v1_key: EcPrivateKey, v2_secret: HmacSecret) -> KeySet:
    return KeySet.of(
        [AppKey.from_private_key(V1_APP, v1_key), AppKey.from_secret(V2_APP, v2_secret)]
    )


@pytest.fixture
def settings() -> EngineSettings:
    return EngineSettings(workers=2, max_batch=32, max_delay=0.002)


@pytest.fixture
async def engine(keyset: KeySet, settings: EngineSettings) -> AsyncIterator[Engine]:
    """A started engine with two worker processes, closed after the test."""
    async with Engine(keyset, settings) as engine:
        yield engine
