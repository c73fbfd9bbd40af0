"""The Redis Cluster backend against a real 3-master cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signer.cache.backends.cluster import RedisClusterCache, parse_cluster_url
from signer.cache.base import CachedToken, CacheKey
from tests.support import RedisCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    nodes = RedisCluster(tmp_path / "cluster").start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
async def cluster_cache(cluster: RedisCluster) -> AsyncIterator[RedisClusterCache]:
    cache = RedisClusterCache.from_url(cluster.url, timeout=0.2)
    yield cache
    await cache.close()


def item(userid: str) -> tuple[CacheKey, CachedToken, int]:
    return (
        CacheKey(1400000001, "1", 86400, "", userid),
        CachedToken(f"sig-{userid}", userid, 1400000001, 1, 2_000_000_000, "1"),
        60,
    )


async def test_batch_across_slots_reads_back_in_order(
    cluster_cache: RedisClusterCache, cluster: RedisCluster
) -> None:
    """200 users land on every master; one batched read returns all of them, in order."""
    items = [item(f"user_{n}") for n in range(200)]
    await cluster_cache.set_many(items, wait=True)
    assert all(count > 20 for count in cluster.keys_per_node())
    found = await cluster_cache.get_many([key for key, _, _ in items])
    assert found == [token for _, token, _ in items]
    assert cluster_cache.healthy()


async def test_delete_user_and_leases_work_across_slots(cluster_cache: RedisClusterCache) -> None:
    key, token, ttl = item("someone")
    await cluster_cache.set_many([(key, token, ttl)], wait=True)
    assert await cluster_cache.acquire_lease(key, 1.0) == (True, token)
    assert (await cluster_cache.acquire_lease(key, 1.0))[0] is False
    await cluster_cache.release_lease(key)
    await cluster_cache.flush()
    assert (await cluster_cache.acquire_lease(key, 1.0))[0] is True
    assert await cluster_cache.delete_user(key.sdkappid, "someone", known=[key]) == 1
    assert await cluster_cache.get_many([key]) == [None]


def test_cluster_url_parsing() -> None:
    nodes, options = parse_cluster_url("rediss+cluster://app:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert options == {"ssl": True, "username": "app", "password": "pw"}
