"""The Sentinel backend: the master is found through a real redis-sentinel."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.cache.backends.sentinel import RedisSentinelCache, parse_sentinel_url
from signer.cache.base import CachedToken, CacheKey
from tests.cache.redis_server import RedisSentinel


async def test_round_trip_through_the_sentinel_master(tmp_path: Path) -> None:
    sentinel = RedisSentinel(tmp_path).start()
    cache = RedisSentinelCache.from_url(sentinel.url, timeout=0.2)
    try:
        key = CacheKey(1400000001, "1", 60, "", "sentinel-user")
        token = CachedToken("sig", "sentinel-user", 1400000001, 1, 2_000_000_000, "1")
        await cache.set_many([(key, token, 60)], wait=True)
        assert await cache.get_many([key]) == [token]
        assert sentinel.master.cli("DBSIZE") == "1"  # it really went to the master
    finally:
        await cache.close()
        sentinel.stop()


def test_sentinel_url_parsing() -> None:
    nodes, service, options = parse_sentinel_url(
        "redis+sentinel://u:p@s1:26379,s2:26380/mymaster/2"
    )
    assert (nodes, service) == ([("s1", 26379), ("s2", 26380)], "mymaster")
    assert options == {"ssl": False, "db": 2, "username": "u", "password": "p"}
    with pytest.raises(ValueError, match="service"):
        parse_sentinel_url("redis+sentinel://s1:26379")
