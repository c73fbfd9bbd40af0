"""The Redis Cluster backend: the same store as :mod:`~signer.cache.backends.redis`, with
keys spread over hash slots.

URL: ``redis+cluster://[user:pass@]host:port[,host:port...]`` (``rediss+cluster://`` for
TLS, with redis-py's ``ssl_*`` options as query parameters, as a ``rediss://`` URL takes
them: ``?ssl_ca_certs=/etc/signer/redis-ca.pem``); any reachable node is enough to
discover the rest. Reads are MGETs split
per slot by redis-py and writes are non-transactional cluster pipelines split per node, so
a batch whose users live in many slots costs a round trip per node, not per key. Each
user's keys share the hash tag ``{sdkappid:userid}``, so they always live in one slot.
Eviction broadcasts use ordinary PUBLISH, which a cluster propagates to every node.
"""

from __future__ import annotations

from typing import Any, Self

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from signer.cache.backends.batching import socket_timeout
from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker
from signer.config.redis_urls import parse_cluster_url


class RedisClusterCache(RedisCache):
    name = "redis-cluster"

    async def _mget_call(self, names: list[bytes]) -> list[Any]:
        # Users live in many slots: redis-py splits this into one MGET per slot group.
        client: Any = self.client
        return list(await client.mget_nonatomic(names))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> Self:
        nodes, options = parse_cluster_url(url)
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            socket_timeout=socket_timeout(timeout),
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # one retry: room to follow a MOVED redirection
            health_check_interval=0,
            **options,
        )
        # PUBLISH reaches every node of a cluster: one node is enough to listen on.
        host, port = nodes[0]
        subscriber = Redis(
            host=host, port=port, socket_connect_timeout=max(timeout, 1.0), **options
        )
        return cls(client, subscriber=subscriber, timeout=timeout, breaker=breaker, prefix=prefix)
