"""The Redis backend against a real redis-server: round trips, coalescing, and outages."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from signer.cache.backends.redis import RedisCache
from signer.cache.base import CachedToken, CacheKey
from signer.cache.breaker import CircuitBreaker, State
from signer.core import EcPrivateKey, UserIdPolicy, V1Signer
from signer.core.envelope import urlsafe_b64encode
from tests.support import RedisServer


def entry(userid: str, expires_at: int = 2_000_000_000) -> tuple[CacheKey, CachedToken]:
    key = CacheKey(1400000001, "1", 86400, "", userid)
    return key, CachedToken(f"sig-for-{userid}", userid, 1400000001, 1_700_000_000, expires_at, "1")


class TestRoundTrip:
    async def test_set_then_get_with_ttl(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """A stored token comes back identical, and Redis expires it after the TTL."""
        key, token = entry("alice")
        await redis_cache.set_many([(key, token, 120)])
        await redis_cache.flush()
        assert await redis_cache.get_many([key]) == [token]
        ttl_ms = int(redis_server.cli("PTTL", redis_cache.key(key).decode()))
        assert 110_000 < ttl_ms <= 120_000

    async def test_missing_and_corrupt_entries_are_misses(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        key, _ = entry("bob")
        redis_server.cli("SET", redis_cache.key(key).decode(), "garbage")
        other, _ = entry("carol")
        assert await redis_cache.get_many([key, other]) == [None, None]

    async def test_delete(self, redis_cache: RedisCache) -> None:
        key, token = entry("dave")
        await redis_cache.set_many([(key, token, 60)])
        await redis_cache.flush()
        assert await redis_cache.delete([key]) == 1
        assert await redis_cache.get_many([key]) == [None]


class TestStoredForm:
    @pytest.mark.parametrize("userid", ["u1", "user_123456", "用户_ü", "ü" * 16, "x" * 100])
    async def test_real_tokens_round_trip_compactly(
        self, redis_cache: RedisCache, p256_key: EcPrivateKey, userid: str
    ) -> None:
        """A v1 P-256 token of the default lifetime: codec layout 3 (lead byte >= 0x80) for
        userids up to 32 bytes, layout 2 beyond; either way it comes back identical."""
        signed = V1Signer(1400000001, p256_key, UserIdPolicy(200)).sign(userid)
        token = CachedToken(
            signed.usersig, userid, 1400000001, signed.issued_at, signed.expires_at, "1"
        )
        key = CacheKey(1400000001, "1~0123abcd", 15552000, "", userid)
        await redis_cache.set_many([(key, token, 60)], wait=True)
        assert await redis_cache.get_many([key]) == [token]
        stored = await redis_cache.client.get(redis_cache.key(key))
        if len(userid.encode()) <= 32:
            assert stored[0] & 0x80
        else:
            assert stored[0] == 2
        if userid == "u1":
            assert len(stored) <= 252  # jemalloc's 256-byte class, with room to spare

    async def test_entries_older_releases_wrote_are_read(self, redis_cache: RedisCache) -> None:
        """Codec layouts 1 and 2 already in Redis at an upgrade stay readable."""
        raw = bytes.fromhex("785e") + b"rest"
        userid = "用户".encode()
        head = struct.pack(">BBIIIH", 1, 1, 1_795_000_000, 1_795_086_400, 1400000001, len(userid))
        old = {
            "one": head + userid + b"\x01" + b"1" + raw,
            "two": struct.pack(">BBIIIB", 2, 1, 1_795_000_000, 1_795_086_400, 1400000001, 6)
            + userid
            + raw,
        }
        keys = {name: CacheKey(1400000001, f"1~{name}", 86400, "", "用户") for name in old}
        for name, value in old.items():
            await redis_cache.client.set(redis_cache.key(keys[name]), value, px=60_000)
        expected = CachedToken(
            urlsafe_b64encode(raw), "用户", 1400000001, 1_795_000_000, 1_795_086_400, "1"
        )
        assert await redis_cache.get_many(list(keys.values())) == [expected, expected]


async def test_concurrent_reads_share_one_mget(
    redis_cache: RedisCache, redis_server: RedisServer
) -> None:
    """Lookups made in the same loop iteration travel in one MGET, not one call each."""
    items = [entry(f"u{i}") for i in range(300)]
    await redis_cache.set_many([(k, t, 60) for k, t in items])
    await redis_cache.flush()
    before = redis_server.command_calls("mget")
    results = await asyncio.gather(*(redis_cache.get_many([k]) for k, _ in items))
    assert [r[0] for r in results] == [t for _, t in items]
    assert redis_server.command_calls("mget") - before == 1


async def test_delete_user_retires_every_variant(
    redis_cache: RedisCache, redis_server: RedisServer
) -> None:
    """Logout: known variants are deleted, every other one is retired by the marker."""
    key, token = entry("hal")
    variants = [
        key,
        key._replace(expire=600),
        key._replace(key_version="2"),
        key._replace(userbuf_digest="ab"),
    ]
    await redis_cache.set_many([(k, token, 60) for k in variants])
    other, other_token = entry("ivy")
    await redis_cache.set_many([(other, other_token, 60)])
    await redis_cache.flush()
    assert await redis_cache.delete_user(key.sdkappid, "hal", known=[key]) == 1
    assert await redis_cache.get_many(variants) == [None] * 4
    assert await redis_cache.get_many([other]) == [other_token]
    later = CachedToken("new", "hal", key.sdkappid, int(time.time()) + 5, 2_000_000_000, "1")
    await redis_cache.set_many([(key, later, 60)], wait=True)
    assert await redis_cache.get_many([key]) == [later]  # issued after the logout: served


class TestOutages:
    async def test_dead_redis_is_a_quick_miss_and_opens_the_breaker(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """With Redis gone, reads answer None within the budget and writes are dropped."""
        key, token = entry("erin")
        redis_server.kill()
        start = time.monotonic()
        for _ in range(5):
            assert await redis_cache.get_many([key]) == [None]
        await redis_cache.set_many([(key, token, 60)])
        await redis_cache.flush()
        assert time.monotonic() - start < 1.0
        assert redis_cache.breaker.state is State.OPEN
        assert not redis_cache.healthy()

    async def test_recovers_by_itself_when_redis_returns(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        key, token = entry("fay")
        redis_server.kill()
        for _ in range(3):
            await redis_cache.get_many([key])
        assert redis_cache.breaker.state is not State.CLOSED
        RedisServer(redis_server.directory, redis_server.port).start()
        try:
            deadline = time.monotonic() + 5
            while True:
                await redis_cache.set_many([(key, token, 60)])
                await redis_cache.flush()
                if await redis_cache.get_many([key]) == [token]:
                    break
                assert time.monotonic() < deadline, "the cache never came back"
                await asyncio.sleep(0.1)
            assert redis_cache.healthy()
        finally:
            redis_server.cli("SHUTDOWN", "NOSAVE")

    async def test_paused_redis_costs_at_most_the_budget(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """CLIENT PAUSE: a read gives up after ~50 ms instead of waiting seconds."""
        key, token = entry("gus")
        await redis_cache.set_many([(key, token, 60)])
        await redis_cache.flush()
        redis_server.cli("CLIENT", "PAUSE", "3000", "ALL")
        start = time.monotonic()
        assert await redis_cache.get_many([key]) == [None]
        assert time.monotonic() - start < 0.5

    async def test_a_write_slower_than_a_read_budget_is_still_stored(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """Writes paused 200 ms (CLIENT PAUSE WRITE): a background write, which has a budget
        of its own (1 s), waits them out and stores its token; reads still give up at 50 ms.

        Catches: a socket timeout of the read budget on the client every call shares (a
        write answered after 50 ms failed: under a storm's busy loop, 150-200 tokens a run
        were signed and dropped, and their userids signed again)."""
        key, token = entry("hana")
        redis_server.cli("CLIENT", "PAUSE", "200", "WRITE")
        await redis_cache.set_many([(key, token, 60)])
        await redis_cache.flush()
        assert redis_cache.dropped_writes == 0
        assert await redis_cache.get_many([key]) == [token]
        redis_server.cli("CLIENT", "PAUSE", "3000", "ALL")
        start = time.monotonic()
        assert await redis_cache.get_many([key]) == [None]
        assert time.monotonic() - start < 0.5


def test_breaker_cycle() -> None:
    """closed → open after the threshold → half-open after the reset time → closed on success."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_after=1.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state is State.CLOSED
    breaker.failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    now[0] = 1.5
    assert breaker.state is State.HALF_OPEN and breaker.allow() and not breaker.allow()
    breaker.failure()
    assert breaker.state is State.OPEN
    now[0] = 3.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is State.CLOSED


class TestWritesHeldThroughOutages:
    """A token signed while Redis cannot take its write is stored once it can: dropped,
    its userid's next request signed again (a whole outage's tokens, twice)."""

    async def _open_breaker(self, cache: RedisCache, server: RedisServer) -> None:
        server.kill()
        for _ in range(3):
            await cache.get_many([entry("probe")[0]])
        assert cache.breaker.state is State.OPEN

    async def _restart(self, cache: RedisCache, server: RedisServer) -> None:
        RedisServer(server.directory, server.port).start()
        await asyncio.sleep(cache.breaker.reset_after)
        assert await cache.probe()  # closes the breaker: the held writes go
        await cache.flush()

    async def test_tokens_signed_during_an_outage_are_stored_when_redis_returns(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """A plain write and a lease's settlement, both made while the breaker is open,
        are in Redis after it closes, with the TTL they had left."""
        (plain, plain_token), (leased, leased_token) = entry("ivy"), entry("jon")
        await self._open_breaker(redis_cache, redis_server)
        await redis_cache.set_many([(plain, plain_token, 60)])
        await redis_cache.release_lease(leased, (leased_token, 60))
        assert redis_cache.held_writes == 2
        await asyncio.sleep(0.5)
        try:
            await self._restart(redis_cache, redis_server)
            assert await redis_cache.get_many([plain, leased]) == [plain_token, leased_token]
            ttl_ms = int(redis_server.cli("PTTL", redis_cache.key(plain).decode()))
            assert 50_000 < ttl_ms <= 59_500  # the time held is taken off
            assert redis_cache.held_writes == 0
            assert redis_cache.dropped_writes == 0
        finally:
            redis_server.cli("SHUTDOWN", "NOSAVE")

    async def test_a_held_write_never_replaces_what_was_stored_meanwhile(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        key, old = entry("kim")
        newer = CachedToken("newer", "kim", key.sdkappid, 1_700_000_100, 2_000_000_000, "1")
        await self._open_breaker(redis_cache, redis_server)
        await redis_cache.set_many([(key, old, 60)])
        RedisServer(redis_server.directory, redis_server.port).start()
        try:
            other = RedisCache.from_url(redis_server.url)  # another instance, Redis up
            await other.set_many([(key, newer, 60)], wait=True)
            await other.close()
            await asyncio.sleep(redis_cache.breaker.reset_after)
            assert await redis_cache.probe()
            await redis_cache.flush()
            assert await redis_cache.get_many([key]) == [newer]
        finally:
            redis_server.cli("SHUTDOWN", "NOSAVE")

    async def test_a_write_that_timed_out_is_tried_once_more(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """Writes paused 1.3 s, past a write's 1 s budget: the write fails, the breaker
        stays closed (one failure), and the second try, queued behind the pause, stores."""
        key, token = entry("lou")
        redis_server.cli("CLIENT", "PAUSE", "1300", "WRITE")
        await redis_cache.set_many([(key, token, 60)])
        await redis_cache.flush()
        assert redis_cache.dropped_writes == 0
        assert await redis_cache.get_many([key]) == [token]

    async def test_a_logout_during_the_outage_still_wins(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """A token held through an outage, then its user logged out (on another instance,
        once Redis is back): the held write lands after the logout and is never served."""
        key, token = entry("max")
        issued = CachedToken(
            token.usersig, "max", key.sdkappid, int(time.time()) - 5, 2_000_000_000, "1"
        )
        await self._open_breaker(redis_cache, redis_server)
        await redis_cache.set_many([(key, issued, 60)])
        RedisServer(redis_server.directory, redis_server.port).start()
        try:
            other = RedisCache.from_url(redis_server.url)
            await other.delete_user(key.sdkappid, "max", [key])
            await other.close()
            await asyncio.sleep(redis_cache.breaker.reset_after)
            assert await redis_cache.probe()
            await redis_cache.flush()
            assert redis_server.cli("EXISTS", redis_cache.key(key).decode()) == "1"
            assert await redis_cache.get_many([key]) == [None]
        finally:
            redis_server.cli("SHUTDOWN", "NOSAVE")
