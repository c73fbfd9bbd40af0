"""Cache fixtures: a real redis-server per test (started and stopped by pid)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker
from tests.support import RedisServer


@pytest.fixture
async def redis_cache(redis_server: RedisServer) -> AsyncIterator[RedisCache]:
    cache = RedisCache.from_url(
        redis_server.url, timeout=0.05, breaker=CircuitBreaker(failure_threshold=2, reset_after=0.3)
    )
    yield cache
    await cache.close()
