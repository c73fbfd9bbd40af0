"""The Redis Cluster backend against a real 3-master cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signer.cache import AppPolicy, TokenIssuer
from signer.cache.backends.cluster import RedisClusterCache, parse_cluster_url
from signer.cache.base import CachedToken, CacheKey
from signer.cache.keepwarm import KeepWarm, Pace
from tests.cache.test_coalescing import Engine
from tests.cache.test_keepwarm import EXPIRE, POLICY, START, STEP, Clock
from tests.cache.test_keepwarm import Engine as ClockEngine
from tests.support import RedisCluster

# A 3-master cluster takes seconds to form; the URL parsing test rides along.
pytestmark = [pytest.mark.redis, pytest.mark.slow]


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


async def test_a_storm_of_misses_over_many_slots_stores_every_token_and_leaves_no_lease(
    cluster_cache: RedisClusterCache,
) -> None:
    """64 cold mints whose users live in many slots, through the issuer: each is signed
    once, every token is read back from the cluster, and no lease is left behind. (A
    cluster cannot run one script over many slots: its leases and writes are pipelines,
    split per node by redis-py.)

    Catches: a multi-key script sent to a cluster (CROSSSLOT: no lease taken, nothing
    stored), or a token and its lease in different slots (the settling script refused)."""
    engine = Engine()
    issuer = TokenIssuer(engine, cluster_cache)  # type: ignore[arg-type]
    policy = AppPolicy(1400000001, "1", min_remaining=3600, refresh_ahead=7200)
    userids = [f"slot{n}" for n in range(64)]
    issued = await asyncio.gather(*(issuer.issue(policy, u, 86400) for u in userids))
    await cluster_cache.flush()
    assert engine.signed == 64 and cluster_cache.errors == 0
    keys = [CacheKey(1400000001, "1", 86400, "", u) for u in userids]
    assert [e.usersig if e else None for e in await cluster_cache.get_many(keys)] == [
        i.usersig for i in issued
    ]
    for key in keys:  # every lease was let go: each can be taken again at once
        assert (await cluster_cache.acquire_lease(key, 1.0))[0] is True


async def test_keep_warm_works_across_slots(
    cluster: RedisCluster, cluster_cache: RedisClusterCache
) -> None:
    """Keep-warm on a cluster: each shard's two sets share a slot, so the claim script
    runs there, and the marks of users in many slots ride the write pipelines; users stay
    warm for the horizon, a logged-out one is not re-signed, and one app's keep-warm
    state is spread over every master instead of loading one.

    Catches: a shard's keys spread over slots (the claim script would be refused with
    CROSSSLOT and keep-warm would pause for ever); an app's sets all in one slot."""
    clock = Clock()
    cluster_cache.clock = clock
    engine = ClockEngine(clock)
    issuer = TokenIssuer(engine, cluster_cache, clock=clock, rng=lambda: 0.5)  # type: ignore[arg-type]
    warm = KeepWarm(
        lambda: issuer, cluster_cache.warm, lambda: [POLICY], Pace, cluster_cache.healthy
    )
    users = [f"c{i}" for i in range(30)]
    for userid in users:
        await issuer.issue(POLICY, userid, EXPIRE)
    await cluster_cache.flush()
    await cluster_cache.delete_user(POLICY.sdkappid, "c0")
    while clock.now + STEP < START + 2 * 86400:
        clock.now += STEP
        await warm.tick()
        await cluster_cache.flush()
        keys = [issuer.key(POLICY, userid, EXPIRE, None) for userid in users[1:]]
        entries = await cluster_cache.get_many(keys)
        assert all(
            issuer.verdict(e, k, POLICY) == "hit" for e, k in zip(entries, keys, strict=True)
        )
    assert not warm.stats.paused and warm.stats.resigned[POLICY.sdkappid] >= 2 * 29
    assert len(engine.signed["c0"]) == 1
    assert await cluster_cache.warm.count(POLICY.sdkappid) == 29
    per_master = [len(node.cli("KEYS", "signer:kw:*").split()) for node in cluster.nodes]
    assert all(per_master), per_master
