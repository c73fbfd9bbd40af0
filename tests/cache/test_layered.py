"""The in-process L1 in front of Redis holds hot keys: a key enters it the second time the
instance meets it, so a storm of userids asked for once does not churn it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.memory import MemoryCache
from signer.cache.backends.redis import RedisCache
from signer.cache.base import CachedToken, CacheKey

if TYPE_CHECKING:
    from tests.support import RedisServer

APP = 1400000001


@pytest.fixture
async def layered(redis_server: RedisServer) -> AsyncIterator[LayeredCache]:
    """An L1 of 100 entries in front of a Redis store of its own; closing it closes the
    store and its eviction listener (the store is not closed twice)."""
    cache = LayeredCache(MemoryCache(100), RedisCache.from_url(redis_server.url), l1_ttl=600)
    yield cache
    await cache.close()


def entry(userid: str) -> tuple[CacheKey, CachedToken]:
    key = CacheKey(APP, "1", 86400, "", userid)
    return key, CachedToken(f"sig-{userid}", userid, APP, 1, 2_000_000_000, "1")


async def test_a_key_read_twice_from_redis_is_in_l1_and_once_is_not(layered: LayeredCache) -> None:
    """Catches: every Redis read stored in L1 (a storm's one-off userids evicting the hot
    ones, at a cost per request greater than the read it saves), or hot keys never
    admitted at all."""
    key, token = entry("hot")
    await layered.shared.set_many([(key, token, 600)], wait=True)
    assert await layered.get_many([key]) == [token]
    assert await layered.l1.get_many([key]) == [None]  # met once: not in L1
    assert await layered.get_many([key]) == [token]
    assert await layered.l1.get_many([key]) == [token]  # met twice: hot


async def test_a_storm_of_one_off_keys_leaves_l1_alone_and_the_window_bounded(
    layered: LayeredCache,
) -> None:
    """5,000 userids each asked for once through an L1 of 100: none enters it, a hot key
    admitted before stays, and what remembers the keys met once stays bounded.

    Catches: one-off keys admitted (the hot key evicted), or the memory of keys met once
    growing with the storm."""
    hot_key, hot = entry("hot")
    for _ in range(2):
        await layered.set_many([(hot_key, hot, 600)])
    storm = [entry(f"once{n}") for n in range(5000)]
    await layered.shared.set_many([(k, t, 600) for k, t in storm], wait=True)
    for start in range(0, 5000, 500):
        keys = [k for k, _ in storm[start : start + 500]]
        assert all(await layered.get_many(keys))
    assert await layered.l1.get_many([hot_key]) == [hot]
    assert await layered.l1.get_many([k for k, _ in storm]) == [None] * 5000
    assert len(layered._seen) <= max(1024, 100)
