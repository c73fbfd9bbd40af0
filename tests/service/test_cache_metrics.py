"""What the shared cache's own counters say on /metrics: calls to Redis that failed, and
token writes that were never made, so a dashboard sees a sick Redis the service hides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from signer.cache.factory import make_cache
from signer.config import build_runtime, load_settings
from signer.service.app import create_app
from signer.service.keys import STATE
from signer.service.state import ServiceState
from tests.service.conftest import V2_APP, Deployment
from tests.support import RedisServer

COUNTERS = ("signer_cache_errors_total", "signer_cache_dropped_writes_total")
AppClient = Callable[..., Awaitable[TestClient]]


async def _service(
    aiohttp_client: AppClient, deployment: Deployment, **cache: object
) -> TestClient:
    """The service of ``deployment`` with its ``[cache]`` settings changed by ``cache``."""
    runtime = build_runtime(load_settings(deployment.config))
    settings = runtime.settings.cache.model_copy(update=cache)
    state = ServiceState.create(runtime, make_cache(settings))
    return await aiohttp_client(create_app(state))


async def _counters(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in COUNTERS
    }


async def _mint(client: TestClient, deployment: Deployment, userid: str) -> None:
    body = {"sdkappid": V2_APP, "userid": userid}
    response = await client.post("/v1/usersig", json=body, headers=deployment.headers())
    assert response.status == 200  # Redis down or not, the token is signed here


class TestCacheErrorMetrics:
    @pytest.mark.parametrize("l1_entries", [10_000, 0], ids=["with-l1", "redis-only"])
    async def test_failed_calls_and_dropped_writes_are_counted(
        self,
        aiohttp_client: AppClient,
        deployment: Deployment,
        redis_server: RedisServer,
        l1_entries: int,
    ) -> None:
        """Both counters read 0 while Redis answers and move once it is gone: its reads
        fail (errors) and the tokens signed meanwhile are not stored (dropped writes),
        behind the in-process L1 or without one. (The breaker is kept closed, so that
        every write is tried and fails.)"""
        client = await _service(
            aiohttp_client,
            deployment,
            url=redis_server.url,
            l1_entries=l1_entries,
            breaker_failures=1000,
        )
        await _mint(client, deployment, "before")
        assert await _counters(client) == dict.fromkeys(COUNTERS, 0.0)
        redis_server.kill()
        for n in range(5):
            await _mint(client, deployment, f"after_{n}")
        counted = await _counters(client)
        assert counted["signer_cache_errors_total"] >= 1
        assert counted["signer_cache_dropped_writes_total"] >= 1

    async def test_the_memory_cache_has_no_such_counters(
        self, aiohttp_client: AppClient, deployment: Deployment
    ) -> None:
        """An in-process store has no calls that fail and drops no writes: nothing is
        exposed rather than a counter that could never move."""
        client = await _service(aiohttp_client, deployment, url="")
        await _mint(client, deployment, "local")
        assert await _counters(client) == {}


class TestRoundTripMetrics:
    async def test_each_kind_of_call_is_counted_with_its_commands(
        self, aiohttp_client: AppClient, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """A cold mint through Redis (no L1) shows one read (which took the lease) and one
        write round trip; the token served again from Redis one more read; every kind is
        exposed from the start, at 0.

        Catches: round trips not counted, counted under the wrong kind, or series that
        appear only after their first call (an alert on their rate would see nothing)."""
        client = await _service(aiohttp_client, deployment, url=redis_server.url, l1_entries=0)
        await _mint(client, deployment, "counted")
        state = client.app[STATE]
        await state.cache.flush()  # the write lets go of the lease after the answer
        await _mint(client, deployment, "counted")  # a hit, from Redis
        text = await (await client.get("/metrics")).text()
        trips, commands = {}, {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "signer_cache_round_trips_total":
                    trips[sample.labels["kind"]] = sample.value
                if sample.name == "signer_cache_commands_total":
                    commands[sample.labels["kind"]] = sample.value
        assert {k: trips[k] for k in ("read", "lease", "write", "delete")} == {
            "read": 2.0,  # each a script: read, and lease what is missing
            "lease": 0.0,
            "write": 1.0,
            "delete": 0.0,
        }
        assert (commands["read"], commands["lease"], commands["write"]) == (2.0, 0.0, 1.0)
