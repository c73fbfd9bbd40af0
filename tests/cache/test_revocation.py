"""delete_user on the shared backends: a revocation Redis did not take raises, it is made
even through an open breaker, and its marker lives as long as the app's longest token."""

from __future__ import annotations

import time

import pytest

from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.memory import MemoryCache
from signer.cache.backends.redis import RedisCache
from signer.cache.base import CachedToken, CacheKey, RevocationNotRecorded
from signer.cache.breaker import State
from tests.support import RedisServer

APP = 1400000001


def entry(userid: str) -> tuple[CacheKey, CachedToken]:
    now = int(time.time()) - 5
    key = CacheKey(APP, "1", 86400, "", userid)
    return key, CachedToken("sig-" + userid, userid, APP, now, now + 86400, "1")


class TestRedisRevocation:
    async def test_a_dead_server_raises_instead_of_answering_0(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """Connection refused on every try: RevocationNotRecorded, counted once."""
        redis_server.kill()
        with pytest.raises(RevocationNotRecorded) as caught:
            await redis_cache.delete_user(APP, "gone", [entry("gone")[0]])
        assert caught.value.retry_after == redis_cache.breaker.reset_after
        assert redis_cache.errors == 1

    async def test_an_open_breaker_does_not_stop_a_revocation(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """The breaker guards lookups; a ban still reaches Redis, and its success closes it."""
        for _ in range(redis_cache.breaker.failure_threshold):
            redis_cache.breaker.failure()
        assert redis_cache.breaker.state is State.OPEN
        assert await redis_cache.delete_user(APP, "banned", max_lifetime=100) == 0
        ttl_ms = int(redis_server.cli("PTTL", f"signer:rev:{{{APP}:banned}}"))
        assert 100_000 <= ttl_ms <= 160_000  # max_lifetime plus a minute at most
        assert redis_cache.breaker.state is State.CLOSED


class TestLayeredRevocation:
    async def test_l1_is_emptied_even_when_redis_refuses(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """Redis down: the caller hears RevocationNotRecorded, and L1 holds nothing of
        the user any more."""
        layered = LayeredCache(MemoryCache(100), redis_cache, l1_ttl=60)
        key, token = entry("leaver")
        for _ in range(2):  # met twice: a hot key, admitted into L1
            await layered.set_many([(key, token, 60)])
        assert await layered.l1.get_many([key]) == [token]
        redis_server.kill()
        with pytest.raises(RevocationNotRecorded):
            await layered.delete_user(APP, "leaver", [key])
        assert await layered.l1.get_many([key]) == [None]
        await layered.l1.set_many([(key, token, 60)])  # a signing under way hands it over
        assert await layered.l1.get_many([key]) == [None]
