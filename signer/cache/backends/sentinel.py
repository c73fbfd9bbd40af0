"""The Redis Sentinel backend: the master of a monitored service, found through Sentinel.

URL: ``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>[/<db>]``
(``rediss+sentinel://`` for TLS to the data nodes). The client asks the sentinels for the
current master on (re)connection, so after a failover the next call reaches the new one;
the calls in between are misses, like any other Redis outage.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from signer.cache.backends.batching import socket_timeout
from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """Sentinel addresses, the service name and options for the data connections."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError(f"not a sentinel URL: {parts.scheme}://")
    sentinels = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        name, _, port = host.rpartition(":")
        sentinels.append((name or "127.0.0.1", int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a sentinel URL names the service: redis+sentinel://host:port/<service>")
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss+sentinel"}
    if len(path) > 1:
        options["db"] = int(path[1])
    if parts.username:
        options["username"] = parts.username
    if parts.password:
        options["password"] = parts.password
    return sentinels, path[0], options


class RedisSentinelCache(RedisCache):
    name = "redis-sentinel"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> Self:
        sentinels, service, options = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            sentinels, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        client = sentinel.master_for(
            service,
            redis_class=Redis,
            socket_timeout=socket_timeout(timeout),
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            **options,
        )
        subscriber = sentinel.master_for(
            service, redis_class=Redis, socket_connect_timeout=max(timeout, 1.0), **options
        )
        return cls(client, subscriber=subscriber, timeout=timeout, breaker=breaker, prefix=prefix)
