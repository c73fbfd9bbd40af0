"""Knowing whether the shared cache is up: the breaker reports its changes of state, and
the Redis backend probes the server, so health is true before any request and follows
Redis down and back up on an idle instance too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.memory import MemoryCache
from signer.cache.backends.redis import RedisCache
from signer.cache.base import CacheKey
from signer.cache.breaker import CircuitBreaker, State
from tests.support import RedisServer, free_port


def fake_clock() -> tuple[list[float], Callable[[], float]]:
    now = [0.0]
    return now, lambda: now[0]


class TestBreakerTransitions:
    def test_every_change_of_state_is_reported_once(self) -> None:
        """closed→open, open→half-open (the trial), half-open→open, then →closed: one call each."""
        now, clock = fake_clock()
        breaker = CircuitBreaker(failure_threshold=2, reset_after=1.0, clock=clock)
        seen: list[tuple[State, State]] = []
        breaker.add_listener(lambda old, new: seen.append((old, new)))
        breaker.failure()
        assert seen == []  # below the threshold: still closed
        breaker.failure()
        breaker.failure()  # a late failure while open changes nothing
        assert seen == [(State.CLOSED, State.OPEN)]
        now[0] = 1.5
        assert breaker.allow() and not breaker.allow()
        breaker.failure()
        now[0] = 3.0
        assert breaker.allow()
        breaker.success()
        breaker.success()
        assert seen == [
            (State.CLOSED, State.OPEN),
            (State.OPEN, State.HALF_OPEN),
            (State.HALF_OPEN, State.OPEN),
            (State.OPEN, State.HALF_OPEN),
            (State.HALF_OPEN, State.CLOSED),
        ]

    def test_a_success_while_open_closes_and_is_reported(self) -> None:
        """A call sent before the breaker opened that then succeeds closes it: open→closed."""
        _, clock = fake_clock()
        breaker = CircuitBreaker(failure_threshold=1, reset_after=1.0, clock=clock)
        seen: list[tuple[State, State]] = []
        breaker.add_listener(lambda old, new: seen.append((old, new)))
        breaker.failure()
        breaker.success()
        assert seen == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]

    def test_every_listener_hears_every_change(self) -> None:
        """Several listeners (the backend's own, the service's log) each get each change."""
        breaker = CircuitBreaker(failure_threshold=1)
        first: list[State] = []
        second: list[State] = []
        breaker.add_listener(lambda old, new: first.append(new))
        breaker.add_listener(lambda old, new: second.append(new))
        breaker.failure()
        breaker.success()
        assert first == second == [State.OPEN, State.CLOSED]

    def test_idle_for_counts_from_the_last_answer(self) -> None:
        """idle_for() is the time since the store last answered or failed."""
        now, clock = fake_clock()
        breaker = CircuitBreaker(clock=clock)
        now[0] = 4.0
        assert breaker.idle_for() == 4.0
        breaker.success()
        now[0] = 5.5
        assert breaker.idle_for() == 1.5
        breaker.failure()
        assert breaker.idle_for() == 0.0


def dead_cache(reset_after: float = 0.3) -> RedisCache:
    """A cache whose URL has nothing listening behind it."""
    return RedisCache.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        timeout=0.05,
        breaker=CircuitBreaker(failure_threshold=3, reset_after=reset_after),
    )


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.05)


class TestProbe:
    async def test_a_live_server_is_up(self, redis_cache: RedisCache) -> None:
        """A PING answered: probe() is True and the breaker stays closed."""
        assert await redis_cache.probe() is True
        assert redis_cache.healthy() and redis_cache.breaker.state is State.CLOSED

    async def test_nothing_listening_is_down_at_once(self) -> None:
        """One probe of a dead address opens the breaker: unhealthy before any request."""
        cache = dead_cache()
        try:
            start = time.monotonic()
            assert await cache.probe() is False
            assert time.monotonic() - start < 1.0
            assert not cache.healthy() and cache.breaker.state is State.OPEN
        finally:
            await cache.close()

    async def test_the_memory_cache_is_always_up(self) -> None:
        """An in-process store has nothing to reach: its probe is trivially up."""
        assert await MemoryCache().probe() is True

    async def test_the_layered_cache_probes_redis(self) -> None:
        """L1 in front of a dead Redis: the probe (and health) is that of Redis."""
        cache = LayeredCache(MemoryCache(), dead_cache())
        try:
            assert await cache.probe() is False
            assert not cache.healthy()
        finally:
            await cache.close()


class TestHealthFollowsRedis:
    async def test_down_and_back_are_reported_once_each_without_traffic(
        self, redis_cache: RedisCache, redis_server: RedisServer
    ) -> None:
        """Kill Redis, then start it again: an idle cache sees both (one report each)."""
        changes: list[bool] = []
        redis_cache.on_health_change(changes.append)
        assert await redis_cache.probe()
        redis_server.kill()
        await wait_for(lambda: not redis_cache.healthy())
        key = CacheKey(1400000001, "1", 86400, "", "ida")
        for _ in range(10):  # requests meanwhile are misses and report nothing more
            assert await redis_cache.get_many([key]) == [None]
        assert changes == [False]
        again = RedisServer(redis_server.directory, redis_server.port).start()
        try:
            await wait_for(redis_cache.healthy)
            await asyncio.sleep(0.5)
            assert await redis_cache.get_many([key]) == [None]
            assert changes == [False, True]
        finally:
            again.stop()

    async def test_an_unreachable_start_recovers_without_traffic(
        self, redis_server: RedisServer
    ) -> None:
        """Probed while Redis is down, the cache comes up by itself once Redis is back."""
        redis_server.stop()
        cache = RedisCache.from_url(
            redis_server.url, timeout=0.05, breaker=CircuitBreaker(2, reset_after=0.2)
        )
        changes: list[bool] = []
        cache.on_health_change(changes.append)
        try:
            assert await cache.probe() is False
            again = RedisServer(redis_server.directory, redis_server.port).start()
            try:
                await wait_for(cache.healthy)
                assert changes == [False, True]
            finally:
                again.stop()
        finally:
            await cache.close()
