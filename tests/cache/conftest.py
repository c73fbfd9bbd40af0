"""Cache fixtures: a real redis-server per test (started and stopped by pid)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker
from tests.cache.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_cache(redis_server: RedisServer) -> AsyncIterator[RedisCache]:
    cache = RedisCache.from_url(
        redis_server.url, timeout=0.05, breaker=CircuitBreaker(failure_threshold=2, reset_after=0.3)
    )
    yield cache
    await cache.close()
