"""Redis over TLS: ``rediss://`` to a standalone server and ``rediss+cluster://`` to a
3-master cluster, both real redis-servers listening on ``--tls-port`` only, with a CA and
certificate this test makes. A client that does not trust the CA gets nothing from them:
signer then signs locally, as for any Redis outage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.local.processes import Processes
from deploy.local.redis import ClusterNodes, redis_url, start_cluster, start_redis
from deploy.local.tls import Tls, make_certs
from signer.cache.backends.cluster import RedisClusterCache, parse_cluster_url
from signer.cache.backends.redis import RedisCache
from signer.cache.base import CachedToken, CacheKey
from signer.cache.factory import make_cache
from signer.config.settings import CacheSettings

pytestmark = [pytest.mark.redis]


def item(userid: str) -> tuple[CacheKey, CachedToken, int]:
    return (
        CacheKey(1400000001, "1", 86400, "", userid),
        CachedToken(f"sig-{userid}", userid, 1400000001, 1, 2_000_000_000, "1"),
        60,
    )


@pytest.fixture
def certs(tmp_path: Path) -> Tls:
    return make_certs(tmp_path / "tls")


@pytest.fixture
def procs() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def tls_url(procs: Processes, certs: Tls, tmp_path: Path) -> str:
    return start_redis(procs, tmp_path / "redis", tls=certs)


@pytest.fixture
def tls_cluster(procs: Processes, certs: Tls, tmp_path: Path) -> ClusterNodes:
    return start_cluster(procs, tmp_path / "cluster", masters=3, tls=certs)


@pytest.fixture
async def caches() -> AsyncIterator[list[RedisCache]]:
    made: list[RedisCache] = []
    yield made
    for cache in made:
        await cache.close()


class TestStandalone:
    async def test_tokens_round_trip_over_rediss(
        self, tls_url: str, caches: list[RedisCache]
    ) -> None:
        """A ``rediss://`` URL trusting the test CA stores and reads tokens."""
        assert tls_url.startswith("rediss://")
        cache = RedisCache.from_url(tls_url, timeout=1.0)
        caches.append(cache)
        await cache.set_many([item("alice")], wait=True)
        assert await cache.get_many([item("alice")[0]]) == [item("alice")[1]]
        assert await cache.probe()
        assert cache.healthy()

    async def test_a_client_that_does_not_trust_the_ca_gets_nothing(
        self, tls_url: str, caches: list[RedisCache]
    ) -> None:
        """Without the CA (the system's trust store only) the handshake fails: every
        lookup is a miss and the cache reports itself down."""
        cache = RedisCache.from_url(tls_url.partition("?")[0], timeout=1.0)
        caches.append(cache)
        await cache.set_many([item("bob")], wait=True)
        assert await cache.get_many([item("bob")[0]]) == [None]
        assert not await cache.probe()

    async def test_plain_redis_to_the_tls_port_gets_nothing(
        self, tls_url: str, caches: list[RedisCache]
    ) -> None:
        """``redis://`` to a TLS-only port is not silently served in clear text."""
        port = int(tls_url.split(":")[2].split("/")[0])
        cache = RedisCache.from_url(redis_url(port), timeout=0.5)
        caches.append(cache)
        assert not await cache.probe()


@pytest.mark.slow
class TestCluster:
    async def test_tokens_spread_over_the_masters_round_trip_over_tls(
        self, tls_cluster: ClusterNodes, caches: list[RedisCache]
    ) -> None:
        """``rediss+cluster://`` with ``ssl_ca_certs`` discovers the nodes (their TLS
        ports), writes 100 tokens over every master and reads them back in order."""
        assert tls_cluster.url.startswith("rediss+cluster://")
        cache = make_cache(CacheSettings(url=tls_cluster.url, timeout=1.0, l1_entries=0))
        assert isinstance(cache, RedisClusterCache)
        caches.append(cache)
        items = [item(f"user_{n}") for n in range(100)]
        await cache.set_many(items, wait=True)
        assert await cache.get_many([key for key, _, _ in items]) == [t for _, t, _ in items]
        assert await cache.probe()

    async def test_without_the_ca_the_cluster_is_unreachable(
        self, tls_cluster: ClusterNodes, caches: list[RedisCache]
    ) -> None:
        cache = RedisClusterCache.from_url(tls_cluster.url.partition("?")[0], timeout=1.0)
        caches.append(cache)
        assert await cache.get_many([item("carol")[0]]) == [None]
        assert not await cache.probe()


class TestClusterUrl:
    def test_tls_options_are_taken_from_the_query(self) -> None:
        nodes, options = parse_cluster_url(
            "rediss+cluster://:pw@h1:7000,h2:7001?ssl_ca_certs=/ca.pem&ssl_check_hostname=no"
        )
        assert nodes == [("h1", 7000), ("h2", 7001)]
        assert options == {
            "ssl": True,
            "ssl_ca_certs": "/ca.pem",
            "ssl_check_hostname": False,
            "password": "pw",
        }

    def test_an_unknown_option_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match="unknown cluster URL option 'ssl_ca_cert'"):
            parse_cluster_url("rediss+cluster://h1:7000?ssl_ca_cert=/ca.pem")
