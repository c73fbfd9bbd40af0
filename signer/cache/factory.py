"""Choosing the cache backend from the ``[cache]`` settings."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from signer.cache.backends.cluster import RedisClusterCache
from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.memory import MemoryCache
from signer.cache.backends.redis import RedisCache
from signer.cache.backends.sentinel import RedisSentinelCache
from signer.cache.base import CacheBackend
from signer.cache.breaker import CircuitBreaker
from signer.config.settings import CacheSettings


def make_cache(settings: CacheSettings) -> CacheBackend:
    if not settings.url:
        return MemoryCache(settings.max_entries)
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset)
    scheme = settings.url.partition("://")[0]
    backend: type[RedisCache] = RedisCache
    if scheme.endswith("+cluster"):
        backend = RedisClusterCache
    elif scheme.endswith("+sentinel"):
        backend = RedisSentinelCache
    shared = backend.from_url(
        settings.url,
        timeout=settings.timeout,
        breaker=breaker,
        prefix=settings.key_prefix,
    )
    if settings.l1_entries == 0:
        return shared
    return LayeredCache(MemoryCache(settings.l1_entries), shared, settings.l1_ttl)


def describe(settings: CacheSettings) -> str:
    """The cache URL for logs: never the password."""
    if not settings.url:
        return f"in-memory (max {settings.max_entries} entries; no [cache] url configured)"
    parts = urlsplit(settings.url)
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username + '@' if parts.username else ''}{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
