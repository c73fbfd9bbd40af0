"""Cache-aside issuing with a controllable clock: the min_remaining guarantee, refresh-ahead,
single-flight.

The read-time min_remaining check is tested against stores that still hold an entry when
its token has less than min_remaining left: a store that keeps entries past their usable
life, a real Redis (whose TTL runs on real time while the issuer's clock jumps ahead), an
L1 refilled with an aging entry, and a policy whose min_remaining was raised after the
entry was stored (a SIGHUP). The memory cache alone never shows the check at work: it
drops an entry exactly when its token reaches min_remaining.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from signer.cache import AppPolicy, CacheBackend, MemoryCache, TokenIssuer
from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker
from signer.cache.keepwarm import KeepWarm, Pace
from signer.core import HmacSecret, IssuedToken, V2Signer, verify
from signer.engine import SignRequest
from tests.support import RedisServer

SDKAPPID = 1400000001
SECRET = HmacSecret(b"issuer-tests")
MIN_REMAINING = 3600
POLICY = AppPolicy(SDKAPPID, "1", MIN_REMAINING, refresh_ahead=7200, refresh_jitter=0.2)
START = 1_700_000_000


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingEngine:
    """Signs real v2 tokens at the clock's time, counting signatures."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.signed = 0
        self.signer = V2Signer(SDKAPPID, SECRET, key_version="1")

    async def sign(self, request: SignRequest) -> IssuedToken:
        self.signed += 1
        await asyncio.sleep(0)  # a real engine always yields
        issued_at = int(self.clock()) if request.issued_at is None else request.issued_at
        return self.signer.sign(request.userid, request.expire, request.userbuf, issued_at)

    async def sign_many(
        self, requests: Sequence[SignRequest], background: bool = False
    ) -> list[IssuedToken]:
        return [await self.sign(r) for r in requests]


def expiring_store(clock: Clock) -> MemoryCache:
    """The memory cache: an entry leaves when its token has min_remaining seconds left."""
    return MemoryCache(clock=clock)


def keeping_store(clock: Clock) -> MemoryCache:
    """A store that keeps every entry past its usable life, as Redis does when its TTL
    runs longer than the issuer's view of time (clock skew, a raised min_remaining, an
    L1 refill): the memory cache with a clock that never moves, so nothing expires."""
    return MemoryCache(clock=lambda: START)


STORES = pytest.mark.parametrize("store", [expiring_store, keeping_store])


def make(
    clock: Clock, rng: float = 0.5, store: Callable[[Clock], CacheBackend] = expiring_store
) -> tuple[TokenIssuer, CountingEngine]:
    engine = CountingEngine(clock)
    issuer = TokenIssuer(engine, store(clock), clock=clock, rng=lambda: rng)  # type: ignore[arg-type]
    return issuer, engine


# Few userids and lifetimes, so keys repeat: a step reads what an earlier step stored,
# sometimes soon after (a hit), sometimes once it has less than min_remaining left (stale).
steps = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 900), st.integers(0, 3 * 86400)),
        st.sampled_from(["a", "b"]),
        st.sampled_from([MIN_REMAINING + 1, MIN_REMAINING + 600, 7200, 86400]),
    ),
    min_size=1,
    max_size=40,
)


def assert_usable(issued: IssuedToken, userid: str, now: float) -> None:
    """What every answer must be: at least MIN_REMAINING left, valid for the userid asked."""
    assert issued.expires_at - now >= MIN_REMAINING
    verify(issued.usersig, userid=userid, sdkappid=SDKAPPID, key=SECRET, now=int(now))


class TestMinRemaining:
    def test_no_response_ever_has_less_than_min_remaining(self) -> None:
        """Whatever the timing, every token served has at least min_remaining seconds to
        live, from a store that still holds entries past that point.

        Catches: the read-time check in ``TokenIssuer._verdict`` skipped (``if False``), or
        its comparison off (``<=``, the wrong sign), for plain and background-refresh reads.
        The examples must have made stale reads and hits, or this proves nothing: counted
        below (and reported per example with ``hypothesis.event``)."""
        seen: Counter[str] = Counter()

        @settings(max_examples=200, deadline=None)
        @given(steps=steps, rng=st.floats(0, 1))
        def served_tokens_keep_min_remaining(steps: list[tuple[int, str, int]], rng: float) -> None:
            async def run() -> None:
                clock = Clock()
                issuer, _ = make(clock, rng, keeping_store)
                for advance, userid, expire in steps:
                    clock.now += advance
                    issued = await issuer.issue(POLICY, userid, expire)
                    for _ in range(3):
                        await asyncio.sleep(0)  # let background refreshes land
                    assert_usable(issued, userid, clock.now)
                for verdict in ("hit", "stale"):
                    if issuer.lookups[verdict]:
                        event(f"made {verdict} reads")
                seen.update(issuer.lookups)

            asyncio.run(run())

        served_tokens_keep_min_remaining()
        assert seen["stale"] >= 50 and seen["hit"] >= 50, f"lookups covered: {dict(seen)}"

    def test_no_response_ever_has_less_than_min_remaining_with_keep_warm(
        self, redis_server: RedisServer
    ) -> None:
        """The same with keep-warm on, against a real Redis: requests, keep-warm passes
        and logouts in any order and timing; every token served has at least
        min_remaining to live, verifies, and none served from cache was issued at or
        before its user's last logout (a background re-sign never brings one back).

        Catches: a re-sign stored with a TTL past its token's usable life and served
        without the read-time check; a re-sign signed after a logout it crossed. The
        examples must have re-signed, hit and read stale entries: counted below."""
        seen: Counter[str] = Counter()
        warm_steps = st.lists(
            st.tuples(
                st.one_of(st.integers(0, 900), st.integers(0, 3 * 86400)),
                st.sampled_from(["a", "b"]),
                st.sampled_from([MIN_REMAINING + 600, 7200, 86400]),
                st.sampled_from(["ask", "ask", "pass", "pass", "delete"]),
            ),
            min_size=1,
            max_size=40,
        )

        @settings(max_examples=200, deadline=None, derandomize=True)
        @given(steps=warm_steps, rng=st.floats(0, 1))
        def kept_warm_tokens_keep_min_remaining(
            steps: list[tuple[int, str, int, str]], rng: float
        ) -> None:
            async def run() -> None:
                redis_server.cli("FLUSHALL")
                clock = Clock()
                cache = redis_cache(redis_server)
                cache.clock = clock
                engine = CountingEngine(clock)
                issuer = TokenIssuer(engine, cache, clock=clock, rng=lambda: rng)  # type: ignore[arg-type]
                policy = AppPolicy(
                    SDKAPPID, "1", MIN_REMAINING, refresh_ahead=7200, keep_warm=2 * 86400
                )
                warm = KeepWarm(
                    lambda: issuer, cache.warm, lambda: [policy], lambda: Pace(), cache.healthy
                )
                logged_out: dict[str, float] = {}
                try:
                    for advance, userid, expire, action in steps:
                        clock.now += advance
                        if action == "pass":
                            await warm.tick()
                        elif action == "delete":
                            await cache.delete_user(SDKAPPID, userid)
                            logged_out[userid] = clock.now
                        else:
                            issued = await issuer.issue(policy, userid, expire)
                            assert_usable(issued, userid, clock.now)
                            if issued.cached and userid in logged_out:
                                assert issued.issued_at > logged_out[userid]
                        await cache.flush()
                finally:
                    await cache.close()
                seen.update(issuer.lookups)
                seen["resigned"] += warm.stats.resigned[SDKAPPID]

            asyncio.run(run())

        kept_warm_tokens_keep_min_remaining()
        assert seen["resigned"] >= 30 and seen["hit"] >= 30 and seen["stale"] >= 10, dict(seen)

    @STORES
    async def test_stale_entry_is_never_served(self, store: Callable[[Clock], MemoryCache]) -> None:
        """A token one second under min_remaining is signed again, whether the store has
        dropped its entry (expiring) or still holds it (keeping).

        Catches, with the keeping store: the read-time check skipped (``if False``)."""
        clock = Clock()
        issuer, engine = make(clock, store=store)
        first = await issuer.issue(POLICY, "u", 7200)
        clock.now += 7200 - MIN_REMAINING + 1  # one second under min_remaining left
        second = await issuer.issue(POLICY, "u", 7200)
        assert second.usersig != first.usersig and not second.cached and engine.signed == 2
        assert second.expires_at - clock.now >= MIN_REMAINING

    async def test_a_raised_min_remaining_retires_entries_stored_under_the_old_one(
        self,
    ) -> None:
        """After a reload (SIGHUP) raises min_remaining, an entry stored under the old
        value, still in the store, is not served once it has less than the new one left.

        Catches: the read-time check skipped (``if False``); the store's TTL, set when the
        entry was written, still holds it."""
        clock = Clock()
        issuer, engine = make(clock, rng=1.0)
        first = await issuer.issue(POLICY, "u", 86400)
        clock.now += 86400 - 8000  # 8000 s left: a hit under the old floor of 3600
        assert (await issuer.issue(POLICY, "u", 86400)).usersig == first.usersig
        raised = AppPolicy(SDKAPPID, "1", 9000, refresh_ahead=12000)
        again = await issuer.issue(raised, "u", 86400)
        assert not again.cached and again.usersig != first.usersig
        assert again.expires_at - clock.now >= 9000
        assert issuer.lookups["stale"] == 1 and engine.signed == 2

    async def test_redis_keeping_an_entry_past_its_usable_life(
        self, real_redis: RedisCache
    ) -> None:
        """Redis still holds the entry (its TTL runs on real time while the issuer's clock
        has moved on): a token under min_remaining is signed again, not served.

        Catches: the read-time check skipped (``if False``)."""
        clock = Clock()
        issuer, engine = make(clock, store=lambda _: real_redis)
        first = await issuer.issue(POLICY, "u", 7200)
        clock.now += 7200 - MIN_REMAINING + 1
        (entry,) = await real_redis.get_many([issuer._key(POLICY, "u", 7200, None)])
        assert entry is not None and entry.usersig == first.usersig  # still in Redis
        second = await issuer.issue(POLICY, "u", 7200)
        assert not second.cached and second.usersig != first.usersig and engine.signed == 2
        assert second.expires_at - clock.now >= MIN_REMAINING

    async def test_an_l1_refilled_with_an_aging_entry(self, redis_server: RedisServer) -> None:
        """L1 refills from Redis for ``l1_ttl`` seconds whatever the token has left: an
        entry read two seconds above min_remaining is still in L1 three seconds later,
        one under, and is then signed again, not served.

        Catches: the read-time check skipped (``if False``); the L1 keeps the entry for
        its own TTL."""
        clock = Clock()
        layered = LayeredCache(MemoryCache(clock=clock), redis_cache(redis_server), l1_ttl=5)
        try:
            issuer, engine = make(clock, rng=1.0, store=lambda _: layered)
            first = await issuer.issue(POLICY, "u", 7200)
            clock.now += 7200 - MIN_REMAINING - 2  # L1's 5 s are over; Redis still has it
            refilled = await issuer.issue(POLICY, "u", 7200)
            assert refilled.cached and refilled.usersig == first.usersig
            clock.now += 3  # one second under min_remaining, two left in L1
            (entry,) = await layered.l1.get_many([issuer._key(POLICY, "u", 7200, None)])
            assert entry is not None and entry.usersig == first.usersig  # L1 still has it
            again = await issuer.issue(POLICY, "u", 7200)
            assert not again.cached and again.usersig != first.usersig and engine.signed == 2
            assert again.expires_at - clock.now >= MIN_REMAINING
        finally:
            await layered.close()


def redis_cache(server: RedisServer) -> RedisCache:
    """A RedisCache on a real redis-server, with budgets no loaded machine will exceed."""
    return RedisCache.from_url(server.url, timeout=2.0, breaker=CircuitBreaker())


@pytest.fixture
async def real_redis(redis_server: RedisServer) -> AsyncIterator[RedisCache]:
    cache = redis_cache(redis_server)
    yield cache
    await cache.close()


class TestRefreshAhead:
    async def test_refresh_ahead_serves_cached_and_signs_in_background(self) -> None:
        """Past refresh_ahead, the cached token is served at once and a new one signed."""
        clock = Clock()
        issuer, engine = make(clock, rng=0.0)
        first = await issuer.issue(POLICY, "u", 86400)
        clock.now += 86400 - 7000  # 7000 s left: past refresh_ahead (7200), above min_remaining
        again = await issuer.issue(POLICY, "u", 86400)
        assert again.cached and again.usersig == first.usersig  # served at once
        await asyncio.sleep(0.01)
        assert engine.signed == 2 and issuer.refreshes == 1
        fresh = await issuer.issue(POLICY, "u", 86400)
        assert fresh.cached and fresh.issued_at == int(clock.now)

    async def test_jitter_spreads_the_refresh_threshold(self) -> None:
        """With 20 % jitter, a lookup at 6000 s left refreshes only if its draw allows."""
        for rng, expect_refresh in ((0.0, True), (0.9, False)):
            clock = Clock()
            issuer, _ = make(clock, rng=rng)
            await issuer.issue(POLICY, "u", 86400)
            clock.now += 86400 - 6000  # threshold = 7200 * (1 - 0.2 * rng)
            await issuer.issue(POLICY, "u", 86400)
            assert (issuer.refreshes == 1) is expect_refresh


class TestSingleFlight:
    async def test_concurrent_misses_share_one_signature(self) -> None:
        """500 concurrent misses for one key cost one signature and get one token."""
        clock = Clock()
        issuer, engine = make(clock)
        results = await asyncio.gather(*(issuer.issue(POLICY, "cold", 86400) for _ in range(500)))
        assert engine.signed == 1
        assert len({r.usersig for r in results}) == 1
