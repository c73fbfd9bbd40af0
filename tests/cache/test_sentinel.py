"""The Sentinel backend against real redis-server processes in sentinel mode: the master
is found through Sentinel, and a real failover (the master SIGKILLed, a replica promoted)
costs cache hits for a few seconds but never a request."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from signer.cache.backends.sentinel import RedisSentinelCache, parse_sentinel_url
from signer.cache.base import CachedToken, CacheKey
from signer.cache.breaker import CircuitBreaker
from signer.cache.factory import make_cache
from signer.config import build_runtime, load_settings
from signer.core import HmacSecret, verify
from signer.service.app import create_app
from signer.service.state import ServiceState
from tests.support import RedisSentinel, RedisServer

APP = 1400000002
SECRET = "v2-secret-for-sentinel-tests-0123"
API_KEY = "sentinel-test-api-key-0123456789"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}

# Budgets: Sentinel holds the master down after 0.5 s unreachable and promotes within a
# few seconds; nothing below waits longer than these deadlines, polling as it goes.
PROMOTION_DEADLINE = 15.0
RECOVERY_DEADLINE = 5.0


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    """One master and one Sentinel monitoring it."""
    group = RedisSentinel(tmp_path / "sentinel").start()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def failover_group(tmp_path: Path) -> Iterator[RedisSentinel]:
    """A master, one replica and three sentinels (quorum 2) that fail over within seconds."""
    group = RedisSentinel(
        tmp_path / "sentinel",
        replicas=1,
        sentinels=3,
        quorum=2,
        down_after_ms=500,
        failover_timeout_ms=2000,
    ).start()
    try:
        yield group
    finally:
        group.stop()  # by pid, whatever the test did to them


def item(userid: str) -> tuple[CacheKey, CachedToken, int]:
    return (
        CacheKey(APP, "1", 86400, "", userid),
        CachedToken(f"sig-{userid}", userid, APP, 1, 2_000_000_000, "1"),
        60,
    )


async def poll(condition: Callable[[], Awaitable[bool]], deadline: float, what: str) -> None:
    """Await ``condition`` every 50 ms until it holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while not await condition():
        if loop.time() > give_up:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.05)


async def kill_and_wait_for_promotion(group: RedisSentinel) -> RedisServer:
    """SIGKILL the master, then wait (off the event loop, which keeps serving traffic) until
    every sentinel names the promoted replica."""
    old = group.master
    await asyncio.to_thread(old.kill)
    return await asyncio.to_thread(group.promoted, old, PROMOTION_DEADLINE)


def service_app(directory: Path, cache_url: str) -> web.Application:
    """The real service (engine, issuer, HTTP API) on the shared cache at ``cache_url``, with
    no in-process L1: every ``cached: true`` below was read from Redis."""
    config = directory / "signer.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [engine]
            workers = 1

            [[apps]]
            sdkappid = {APP}
            algorithm = "v2"
            secret = "{SECRET}"

            [[callers]]
            name = "app-servers"
            api_key = "{API_KEY}"

            [cache]
            url = "{cache_url}"
            timeout = 0.05
            breaker_failures = 2
            breaker_reset = 0.3
            l1_entries = 0
            """
        )
    )
    runtime = build_runtime(load_settings(config))
    return create_app(ServiceState.create(runtime, make_cache(runtime.settings.cache)))


class TestDiscovery:
    @pytest.mark.redis
    async def test_round_trip_through_the_sentinel_master(self, sentinel: RedisSentinel) -> None:
        """A write and a read go to the master that Sentinel names."""
        cache = RedisSentinelCache.from_url(sentinel.url, timeout=0.2)
        try:
            key, token, ttl = item("sentinel-user")
            await cache.set_many([(key, token, ttl)], wait=True)
            assert await cache.get_many([key]) == [token]
            assert sentinel.master.cli("DBSIZE") == "1"  # it really went to the master
        finally:
            await cache.close()

    def test_sentinel_url_parsing(self) -> None:
        """The URL names the sentinels, the service, the db and the credentials."""
        nodes, service, options = parse_sentinel_url(
            "redis+sentinel://u:p@s1:26379,s2:26380/mymaster/2"
        )
        assert (nodes, service) == ([("s1", 26379), ("s2", 26380)], "mymaster")
        assert options == {"ssl": False, "db": 2, "username": "u", "password": "p"}
        with pytest.raises(ValueError, match="service"):
            parse_sentinel_url("redis+sentinel://s1:26379")


@pytest.mark.redis
@pytest.mark.slow
class TestFailover:
    async def test_backend_follows_the_promoted_replica(
        self, failover_group: RedisSentinel
    ) -> None:
        """With the master SIGKILLed mid-traffic every call still answers within its budget,
        and once Sentinel promotes the replica the same backend object finds it by itself."""
        group = failover_group
        cache = RedisSentinelCache.from_url(
            group.url, timeout=0.05, breaker=CircuitBreaker(failure_threshold=2, reset_after=0.3)
        )
        loop = asyncio.get_running_loop()
        warm = [item(f"warm{n}") for n in range(20)]
        warm_keys, warm_tokens = [k for k, _, _ in warm], [t for _, t, _ in warm]
        stop = asyncio.Event()
        calls: list[tuple[float, float, CachedToken | None, CachedToken]] = []

        async def traffic() -> None:
            """Reads of warm entries and writes of new ones, back to back, until ``stop``."""
            n = 0
            while not stop.is_set():
                key, token, _ = warm[n % len(warm)]
                start = loop.time()
                [found] = await cache.get_many([key])
                await cache.set_many([item(f"during{n}")])
                calls.append((start, loop.time() - start, found, token))
                n += 1
                await asyncio.sleep(0.005)

        try:
            await cache.set_many(warm, wait=True)
            assert await cache.get_many(warm_keys) == warm_tokens
            assert group.master.cli("WAIT", "1", "2000") == "1"  # the replica has them too

            running = asyncio.create_task(traffic())
            await asyncio.sleep(0.2)
            killed_at = loop.time()
            new_master = await kill_and_wait_for_promotion(group)
            assert new_master is group.replicas[0]

            probes = iter(range(1_000_000))

            async def cache_works_again() -> bool:
                # A new write lands on the promoted replica, and the entries it received by
                # replication before the failover are read back from it.
                key, token, ttl = item(f"after{next(probes)}")
                await cache.set_many([(key, token, ttl)], wait=True)
                landed = await asyncio.to_thread(new_master.cli, "EXISTS", cache.key(key).decode())
                return landed == "1" and await cache.get_many(warm_keys) == warm_tokens

            await poll(cache_works_again, RECOVERY_DEADLINE, "the cache works on the new master")
            stop.set()
            await running  # re-raises anything a call raised
        finally:
            stop.set()
            await cache.close()

        assert all(found in (None, token) for _, _, found, token in calls)  # never a wrong one
        outage = [found for start, _, found, _ in calls if start > killed_at]
        assert None in outage  # the master really went away under the traffic...
        assert cache.breaker.opened_count >= 1  # ...and the breaker took over
        # The call budget is 50 ms; waiting on a dead master (TCP, redis-py's retries) would
        # take seconds. The bound leaves room for a busy CI machine.
        assert max(elapsed for _, elapsed, _, _ in calls) < 0.5
        assert cache.healthy()

    async def test_service_answers_every_request_through_a_failover(
        self,
        failover_group: RedisSentinel,
        aiohttp_client: Callable[
            [web.Application], Awaitable[TestClient[web.Request, web.Application]]
        ],
        tmp_path: Path,
    ) -> None:
        """The running service answers every request while the master is killed and replaced,
        then serves cached tokens from the promoted replica, without a restart."""
        group = failover_group
        client = await aiohttp_client(service_app(tmp_path, group.url))
        secret = HmacSecret.from_text(SECRET)
        loop = asyncio.get_running_loop()

        async def sign(userid: str) -> dict[str, object]:
            response = await client.post(
                "/v1/usersig", json={"sdkappid": APP, "userid": userid}, headers=HEADERS
            )
            assert response.status == 200, await response.text()
            body: dict[str, object] = await response.json()
            verify(str(body["usersig"]), userid=userid, sdkappid=APP, key=secret)
            return body

        warm = {f"warm{n}": (await sign(f"warm{n}"))["usersig"] for n in range(20)}

        async def all_warm_cached() -> bool:
            return all([(await sign(userid))["cached"] for userid in warm])

        await poll(all_warm_cached, RECOVERY_DEADLINE, "the warm tokens are cached")
        assert group.master.cli("WAIT", "1", "2000") == "1"  # the replica has them too

        stop = asyncio.Event()
        answered: list[float] = []

        async def traffic(worker: int) -> None:
            """Warm and new userids, back to back, until ``stop``; every answer is checked.
            Only warm0-9: a miss on a warm userid re-signs and overwrites it, so warm10-19
            keep the copies the replica received before the failover."""
            n = 0
            while not stop.is_set():
                userid = f"warm{n % 10}" if n % 2 else f"new{worker}-{n}"
                start = loop.time()
                await sign(userid)
                answered.append(loop.time() - start)
                n += 1
                await asyncio.sleep(0.005)

        running = [asyncio.create_task(traffic(worker)) for worker in range(4)]
        try:
            await asyncio.sleep(0.2)
            before_kill = len(answered)
            new_master = await kill_and_wait_for_promotion(group)
            during_failover = len(answered) - before_kill

            probes = iter(range(1_000_000))

            async def cache_works_again() -> bool:
                # A token signed now is cached on the promoted replica and served from it;
                # a token cached before the failover is served from its replicated copy.
                userid = f"after{next(probes)}"
                first = await sign(userid)
                on_new_master = await asyncio.to_thread(
                    new_master.cli, "KEYS", f"*{{{APP}:{userid}}}*"
                )
                if not on_new_master:
                    return False
                again = await sign(userid)
                replicated = [await sign(f"warm{n}") for n in range(10, 20)]
                return (again["cached"], again["usersig"]) == (True, first["usersig"]) and all(
                    (old["cached"], old["usersig"]) == (True, warm[f"warm{n}"])
                    for n, old in enumerate(replicated, start=10)
                )

            await poll(cache_works_again, RECOVERY_DEADLINE, "the service caches on the new master")
        finally:
            stop.set()
            results = await asyncio.gather(*running, return_exceptions=True)
        assert [r for r in results if r is not None] == []  # no request failed
        assert during_failover > 50  # traffic kept flowing while Sentinel failed over
        assert max(answered) < 1.0  # no request waited on the dead master
        ready = await (await client.get("/readyz")).json()
        assert ready["details"]["cache"] == {"backend": "redis-sentinel", "up": True}
