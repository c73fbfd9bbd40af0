"""The service with the shared Redis cache: sharing across instances, userid binding, and
Redis as an accelerator that may die at any time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signer.cache import codec
from signer.cache.base import CachedToken
from signer.core import verify
from signer.service.keys import STATE
from tests.service.conftest import V1_APP, V2_APP, ClientFactory, Deployment, write_config
from tests.support import RedisServer


@pytest.fixture
def redis_config(deployment: Deployment, redis_server: RedisServer) -> Path:
    cache = {"url": redis_server.url, "timeout": 0.05, "breaker_failures": 2, "breaker_reset": 0.3}
    return write_config(deployment.directory, name="redis.toml", cache=cache)


@pytest.fixture
def l1_config(deployment: Deployment, redis_server: RedisServer) -> Path:
    """Redis with an L1 in front (off by default): what an eviction must empty too."""
    cache = {"url": redis_server.url, "timeout": 0.05, "l1_entries": 10_000}
    return write_config(deployment.directory, name="redis-l1.toml", cache=cache)


async def test_instances_share_tokens_through_redis(
    make_client: ClientFactory, redis_config: Path, deployment: Deployment
) -> None:
    """A token minted by one instance is served, cached, by another."""
    first, second = await make_client(redis_config), await make_client(redis_config)
    body = {"sdkappid": V1_APP, "userid": "shared"}
    minted = await (await first.post("/v1/usersig", json=body, headers=deployment.headers())).json()
    # No wait: if the token is not in Redis yet, the second instance finds the first's lease
    # (let go only once the token is stored) and waits for exactly that write.
    served = await (
        await second.post("/v1/usersig", json=body, headers=deployment.headers())
    ).json()
    assert (served["cached"], served["usersig"]) == (True, minted["usersig"])
    ready = await (await second.get("/readyz")).json()
    assert ready["details"]["cache"] == {"backend": "redis", "up": True}


async def test_an_entry_for_another_user_is_never_served(
    make_client: ClientFactory,
    redis_config: Path,
    deployment: Deployment,
    redis_server: RedisServer,
) -> None:
    """Even if the store hands back the wrong value, the userid inside it is checked."""
    client = await make_client(redis_config)
    headers = deployment.headers()
    mallory = await (
        await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "mallory"}, headers=headers
        )
    ).json()
    mallory_key = await stored_token(redis_server, "mallory")
    forged = CachedToken(
        mallory["usersig"], "mallory", V2_APP, mallory["issued_at"], mallory["expires_at"], "1"
    )
    import redis

    redis.Redis(port=redis_server.port).set(
        mallory_key.replace(":mallory}", ":alice}"), codec.encode(forged)
    )
    alice = await (
        await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "alice"}, headers=headers
        )
    ).json()
    assert alice["cached"] is False and alice["usersig"] != mallory["usersig"]
    verify(alice["usersig"], userid="alice", sdkappid=V2_APP, key=deployment.secret)
    metrics = await (await client.get("/metrics")).text()
    assert 'signer_cache_lookups_total{result="mismatch"} 1.0' in metrics


async def test_redis_killed_mid_traffic_fails_no_request(
    make_client: ClientFactory,
    redis_config: Path,
    deployment: Deployment,
    redis_server: RedisServer,
) -> None:
    """Kill Redis during traffic: every request still succeeds (signed locally); when Redis
    comes back the cache fills again by itself."""
    client = await make_client(redis_config)
    headers = deployment.headers()

    async def one(n: int) -> int:
        userid = f"k{n % 50}" if n < 1000 else f"new{n}"  # new userids: misses reach Redis
        r = await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": userid}, headers=headers
        )
        return r.status

    statuses = [await one(n) for n in range(100)]
    redis_server.kill()
    statuses += await asyncio.gather(*(one(n) for n in range(100, 400)))
    statuses += [await one(n) for n in range(1000, 1010)]  # new userids: misses reach Redis
    assert set(statuses) == {200}
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["details"]["cache"]["up"] is False

    RedisServer(redis_server.directory, redis_server.port).start()
    try:
        for _ in range(50):
            await asyncio.sleep(0.1)
            await one(7)
            again = await (
                await client.post(
                    "/v1/usersig", json={"sdkappid": V2_APP, "userid": "k7"}, headers=headers
                )
            ).json()
            if again["cached"]:
                break
        assert again["cached"] is True
    finally:
        redis_server.cli("SHUTDOWN", "NOSAVE")


async def test_paused_redis_adds_at_most_the_budget(
    make_client: ClientFactory,
    redis_config: Path,
    deployment: Deployment,
    redis_server: RedisServer,
) -> None:
    client = await make_client(redis_config)
    redis_server.cli("CLIENT", "PAUSE", "3000", "ALL")
    loop = asyncio.get_running_loop()
    start = loop.time()
    r = await client.post(
        "/v1/usersig", json={"sdkappid": V2_APP, "userid": "paused"}, headers=deployment.headers()
    )
    assert r.status == 200 and loop.time() - start < 0.5


async def test_eviction_reaches_another_instances_l1(
    make_client: ClientFactory,
    l1_config: Path,
    deployment: Deployment,
    redis_server: RedisServer,
) -> None:
    """DELETE on one instance: the other instance's in-process cache drops the user too."""
    first, second = await make_client(l1_config), await make_client(l1_config)
    headers, body = deployment.headers(), {"sdkappid": V2_APP, "userid": "leaver"}
    minted = await (await first.post("/v1/usersig", json=body, headers=headers)).json()
    for _ in range(2):  # met twice, the token is in second's L1 too (a hot key)
        warm = await (await second.post("/v1/usersig", json=body, headers=headers)).json()
        assert warm["cached"] and warm["usersig"] == minted["usersig"]
    assert second.app[STATE].cache.l1.user_keys(V2_APP, "leaver")
    await subscribers(redis_server, 2)  # both instances listen for evictions
    gone = await first.delete(f"/v1/usersig/{V2_APP}/leaver", headers=headers)
    assert gone.status == 200 and (await gone.json())["evicted"] == 1
    deadline = asyncio.get_running_loop().time() + 10  # pub/sub and a loaded loop may lag
    while True:
        after = await (await second.post("/v1/usersig", json=body, headers=headers)).json()
        if not after["cached"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert after["cached"] is False  # (v2 tokens of the same second are byte-identical)


async def stored_token(server: RedisServer, userid: str, seconds: float = 10) -> str:
    """The name of ``userid``'s token once it is in Redis: a signed token is stored after
    its answer, with the lease let go (a lease's name starts ``signer:lease:``)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        names = server.cli("KEYS", "*").splitlines()
        found = [n for n in names if f":{userid}}}" in n and not n.startswith("signer:lease:")]
        if found and not any(n.startswith("signer:lease:") for n in names):
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"not stored: {names}"
        await asyncio.sleep(0.01)


async def subscribers(server: RedisServer, count: int, seconds: float = 10) -> None:
    """Until ``count`` clients are subscribed to the eviction channel (each instance
    subscribes on its first cache read, in the background)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        reply = server.cli("PUBSUB", "NUMSUB", "signer:evictions").split()
        if reply[-1:] == [str(count)]:
            return
        assert asyncio.get_running_loop().time() < deadline, f"subscribers: {reply}"
        await asyncio.sleep(0.02)


async def test_a_full_redis_refuses_writes_and_the_service_keeps_answering(
    make_client: ClientFactory,
    redis_config: Path,
    deployment: Deployment,
    redis_server: RedisServer,
) -> None:
    """Redis at its maxmemory with ``noeviction`` refuses every write (OOM), leases
    included: every request still gets a valid token (signed locally), and nothing lands
    in Redis.

    Catches: a refused write or lease (an OOM error reply, not an outage) that reaches the
    request as a 500 or holds it."""
    client = await make_client(redis_config)
    redis_server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis_server.cli("CONFIG", "SET", "maxmemory", "1")
    assert redis_server.cli("SET", "probe", "x").startswith("OOM")  # full: writes refused
    headers = deployment.headers()
    for n in range(20):
        userid = f"full{n}"
        r = await client.post(
            "/v1/usersig", json={"sdkappid": V1_APP, "userid": userid}, headers=headers
        )
        assert r.status == 200, await r.text()
        token = await r.json()
        assert token["cached"] is False
        verify(token["usersig"], userid=userid, sdkappid=V1_APP, key=deployment.v1_key.public_key())
    assert redis_server.cli("DBSIZE") == "0"
    ready = await client.get("/readyz")
    assert ready.status == 200
