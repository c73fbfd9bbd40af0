"""DELETE /v1/usersig/{sdkappid}/{userid} (logout, ban) evicts every token of the user for a
caller allowed the app: its path is checked like a body, its revocation marker outlives no
token it could retire by much, and a revocation the shared store could not take is answered
503, never reported as done."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient

from signer.service.keys import STATE
from tests.service.conftest import (
    LIMITED_KEY,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    write_config,
)
from tests.support import RedisServer

MAX_EXPIRE = 7200
MARGIN_BOUND = 300  # seconds a marker may outlive max_expire (write delays, clock steps)
USER = "leaver"
TOKEN_KEY = f"signer:{{{V2_APP}:{USER}}}:"
MARKER_KEY = f"signer:rev:{{{V2_APP}:{USER}}}"


def shared_cache_config(
    deployment: Deployment, server: RedisServer, breaker_reset: float = 0.3
) -> Path:
    """The deployment with the shared cache, and a v2 app whose tokens live 2 h at most."""
    return write_config(
        deployment.directory,
        name=f"redis-{breaker_reset}.toml",
        apps={V2_APP: {"default_expire": 3600, "max_expire": MAX_EXPIRE}},
        cache={
            "url": server.url,
            "timeout": 0.05,
            "breaker_failures": 2,
            "breaker_reset": breaker_reset,
            "min_remaining": 60,
            "refresh_ahead": 120,
            "l1_entries": 10_000,  # L1 in front of Redis: what an eviction must reach
        },
    )


@pytest.fixture
def redis_config(deployment: Deployment, redis_server: RedisServer) -> Path:
    return shared_cache_config(deployment, redis_server)


async def issue(client: TestClient, deployment: Deployment) -> dict[str, object]:
    response = await client.post(
        "/v1/usersig", json={"sdkappid": V2_APP, "userid": USER}, headers=deployment.headers()
    )
    assert response.status == 200
    body: dict[str, object] = await response.json()
    return body


async def revoke(
    client: TestClient, deployment: Deployment, userid: str = USER
) -> tuple[int, dict[str, object], str | None]:
    response = await client.delete(f"/v1/usersig/{V2_APP}/{userid}", headers=deployment.headers())
    return response.status, await response.json(), response.headers.get("Retry-After")


async def cached_in_redis(server: RedisServer) -> dict[str, object]:
    """Wait until the (pipelined, unawaited) write of the user's token has landed."""
    store = redis.Redis(port=server.port)
    for _ in range(100):
        names = store.keys(TOKEN_KEY.replace("{", "[{]").replace("}", "[}]") + "*")
        if names:
            return {"name": names[0]}
        await asyncio.sleep(0.02)
    raise AssertionError("the token never reached Redis")


async def subscribed(server: RedisServer, instances: int) -> None:
    """Wait until ``instances`` listen for eviction broadcasts."""
    for _ in range(100):
        reply = server.cli("PUBSUB", "NUMSUB", "signer:evictions").split()
        if reply[-1:] == [str(instances)]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {instances} subscribers: {reply}")


async def broadcast_reached(client: TestClient, seconds: float = 3.0) -> None:
    """Wait until the eviction broadcast has emptied ``client``'s L1 of the user. It travels
    through Redis pub/sub and the instance's event loop, so a loaded machine may take a
    moment; it must arrive, and nothing stale may be served once it has."""
    l1 = client.app[STATE].cache.l1
    deadline = time.monotonic() + seconds
    while l1.user_keys(V2_APP, USER):
        assert time.monotonic() < deadline, "the eviction broadcast never reached the L1"
        await asyncio.sleep(0.01)


async def never_served(
    client: TestClient, deployment: Deployment, old: dict[str, object], seconds: float = 1.2
) -> None:
    """For ``seconds`` (over a second boundary, so v2 tokens stop being byte-identical),
    no answer is the old token from a cache."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = await issue(client, deployment)
        assert body["cached"] is False or body["usersig"] != old["usersig"], body
        await asyncio.sleep(0.05)


class TestDelete:
    """DELETE as a caller uses it: what it evicts, and who may."""

    async def test_delete_evicts_every_variant_of_the_user(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """DELETE evicts every cached token of the user (one per expire), and the next request
        signs afresh."""
        headers = deployment.headers()
        for expire in (None, 7200):
            body = {
                "sdkappid": V2_APP,
                "userid": "bye/now",
                **({"expire": expire} if expire else {}),
            }
            await client.post("/v1/usersig", json=body, headers=headers)
        r = await client.delete(f"/v1/usersig/{V2_APP}/bye%2Fnow", headers=headers)
        assert r.status == 200 and await r.json() == {
            "sdkappid": V2_APP,
            "userid": "bye/now",
            "evicted": 2,
        }
        again = await (
            await client.post(
                "/v1/usersig", json={"sdkappid": V2_APP, "userid": "bye/now"}, headers=headers
            )
        ).json()
        assert again["cached"] is False

    async def test_delete_needs_auth_and_permission(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """DELETE is 401 without an API key, 403 for an app outside the caller's list, 422 for
        an sdkappid not a number."""
        assert (await client.delete(f"/v1/usersig/{V2_APP}/u")).status == 401
        assert (
            await client.delete(f"/v1/usersig/{V1_APP}/u", headers=deployment.headers(LIMITED_KEY))
        ).status == 403
        assert (
            await client.delete("/v1/usersig/abc/u", headers=deployment.headers())
        ).status == 422


class TestPathValidation:
    async def test_a_userid_beyond_the_app_limit_gets_the_same_422_as_in_a_body(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """40 bytes for an app allowing 32: 422 invalid_userid, word for word as POST."""
        userid = "u" * 40
        posted = await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": userid}, headers=deployment.headers()
        )
        status, body, _ = await revoke(client, deployment, userid)
        assert posted.status == status == 422
        assert body == await posted.json()
        assert body["error"]["code"] == "invalid_userid"  # type: ignore[index]

    async def test_an_8_kb_userid_is_refused_and_writes_nothing(
        self,
        make_client: ClientFactory,
        redis_config: Path,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """The request that used to leave an 8 kB marker for 400 days leaves nothing."""
        client = await make_client(redis_config)
        status, body, _ = await revoke(client, deployment, "x" * 8000)
        assert status == 422 and body["error"]["code"] == "invalid_userid"  # type: ignore[index]
        assert body["error"]["field"] == "userid"  # type: ignore[index]
        assert redis_server.cli("DBSIZE") == "0"

    @pytest.mark.parametrize(
        "path", ["a%0Ab", "a%00b", "a%E2%80%A8b", "%7F"], ids=["LF", "NUL", "U+2028", "DEL"]
    )
    async def test_control_characters_are_refused(
        self, client: TestClient, deployment: Deployment, path: str
    ) -> None:
        """A userid that could never be signed cannot be revoked either: 422 invalid_userid."""
        status, body, _ = await revoke(client, deployment, path)
        assert status == 422 and body["error"]["code"] == "invalid_userid"  # type: ignore[index]

    @pytest.mark.parametrize("path", ["%FF", "a%C3", "%ED%A0%80"])
    async def test_a_path_that_is_not_utf8_is_refused(
        self, client: TestClient, deployment: Deployment, path: str
    ) -> None:
        """Undecodable bytes are refused, not taken as the literal text ``%FF``."""
        status, body, _ = await revoke(client, deployment, path)
        assert status == 422 and body["error"]["field"] == "userid"  # type: ignore[index]

    @pytest.mark.parametrize(
        "raw",
        [
            "0",
            "01400000002",
            "+1400000002",
            "-1",
            "4294967296",
            "99999999999999999999",
            "9" * 5000,
            "1e9",
            "1_400_000_002",
            "\u0661\u0664",  # Arabic-Indic digits: isdigit(), but not a decimal sdkappid
            "%201400000002",
            "0x1",
        ],
        ids=lambda raw: raw[:16],
    )
    async def test_an_sdkappid_outside_1_to_uint32_max_is_a_422(
        self, client: TestClient, deployment: Deployment, raw: str
    ) -> None:
        """Leading zeros, signs, huge numbers: 422 invalid_field on sdkappid, never a 500."""
        response = await client.delete(f"/v1/usersig/{raw}/u", headers=deployment.headers())
        body = await response.json()
        assert response.status == 422, body
        assert body["error"]["code"] == "invalid_field"
        assert body["error"]["field"] == "sdkappid"

    async def test_the_largest_sdkappid_passes_validation(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """4294967295 is a valid sdkappid: the answer is about permission, not format."""
        response = await client.delete("/v1/usersig/4294967295/u", headers=deployment.headers())
        assert response.status == 403


class TestRevocationMarker:
    async def test_the_marker_lives_as_long_as_the_longest_token_and_no_longer(
        self,
        make_client: ClientFactory,
        redis_config: Path,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """The app's max_expire is 2 h: the marker lives 2 h (+ a small margin), not 400 days."""
        client = await make_client(redis_config)
        await issue(client, deployment)
        status, _, _ = await revoke(client, deployment)
        assert status == 200
        ttl_ms = int(redis_server.cli("PTTL", MARKER_KEY))
        assert MAX_EXPIRE * 1000 - 10_000 <= ttl_ms <= (MAX_EXPIRE + MARGIN_BOUND) * 1000

    async def test_with_redis_up_the_old_token_is_never_served_again(
        self,
        make_client: ClientFactory,
        redis_config: Path,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """DELETE answers 200 and neither this instance nor another serves the old token."""
        first, second = await make_client(redis_config), await make_client(redis_config)
        old = await issue(first, deployment)
        await cached_in_redis(redis_server)
        for _ in range(2):  # met twice, the token is in second's L1 (a hot key)
            assert (await issue(second, deployment))["cached"] is True
        assert second.app[STATE].cache.l1.user_keys(V2_APP, USER)
        await subscribed(redis_server, 2)  # (a broadcast sent before that is lost: L1's
        # copies then live out their l1_ttl, as the README says)
        status, body, _ = await revoke(first, deployment)
        assert (status, body) == (200, {"sdkappid": V2_APP, "userid": USER, "evicted": 1})
        await never_served(first, deployment, old, seconds=0.6)
        await broadcast_reached(second)
        await never_served(second, deployment, old, seconds=0.6)


@pytest.mark.slow
class TestRevocationDuringAnOutage:
    async def test_a_delete_while_redis_is_down_is_a_503_and_retried_it_holds(
        self,
        make_client: ClientFactory,
        redis_config: Path,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """Redis dies holding the token and comes back with it (from its snapshot): the
        DELETE made meanwhile is refused with 503, and once retried the token is retired."""
        client = await make_client(redis_config)
        old = await issue(client, deployment)
        await cached_in_redis(redis_server)
        assert (await issue(client, deployment))["cached"] is True
        assert redis_server.cli("SAVE") == "OK"  # the snapshot it will come back with
        redis_server.kill()

        status, body, retry_after = await revoke(client, deployment)
        assert status == 503, body
        assert body["error"]["code"] == "revocation_not_recorded"  # type: ignore[index]
        assert retry_after is not None and int(retry_after) >= 1
        # The local L1 was cleared at once: with Redis down the token is signed afresh.
        assert (await issue(client, deployment))["cached"] is False

        restarted = RedisServer(redis_server.directory, redis_server.port).start()
        redis_server.process = restarted.process  # the fixture stops it
        assert (await cached_in_redis(redis_server))["name"]  # the old token is back in Redis
        assert redis_server.cli("EXISTS", MARKER_KEY) == "0"

        for _ in range(20):  # the caller retries, as Retry-After says
            status, body, _ = await revoke(client, deployment)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        assert redis_server.cli("EXISTS", MARKER_KEY) == "1"
        await never_served(client, deployment, old)
        fresh_instance = await make_client(redis_config)  # no L1 of its own: Redis only
        await never_served(fresh_instance, deployment, old, seconds=0.3)

    async def test_a_delete_while_redis_is_frozen_is_a_503_within_its_budget(
        self,
        make_client: ClientFactory,
        redis_config: Path,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """SIGSTOP keeps the token in Redis: the DELETE gives up within about a second
        with 503, and after SIGCONT the retried DELETE retires the token."""
        client = await make_client(redis_config)
        old = await issue(client, deployment)
        await cached_in_redis(redis_server)
        assert redis_server.process is not None
        pid = redis_server.process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            status, body, retry_after = await revoke(client, deployment)
            took = time.monotonic() - start
        finally:
            os.kill(pid, signal.SIGCONT)
        assert status == 503 and retry_after is not None, body
        assert body["error"]["code"] == "revocation_not_recorded"  # type: ignore[index]
        assert took < 3.0
        for _ in range(20):
            status, body, _ = await revoke(client, deployment)
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        await never_served(client, deployment, old)

    async def test_an_open_breaker_does_not_skip_a_revocation(
        self,
        make_client: ClientFactory,
        deployment: Deployment,
        redis_server: RedisServer,
    ) -> None:
        """Redis was slow a moment ago and the breaker is open: a DELETE still goes to
        Redis (200 means the marker is there), and the token is retired when reads resume."""
        config = shared_cache_config(deployment, redis_server, breaker_reset=30)
        client = await make_client(config)
        old = await issue(client, deployment)
        await cached_in_redis(redis_server)
        paused_at = time.monotonic()
        redis_server.cli("CLIENT", "PAUSE", "1500", "ALL")
        for n in range(3):  # timeouts: the breaker opens (breaker_failures = 2) for 30 s
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": f"other{n}"},
                headers=deployment.headers(),
            )
        ready = await (await client.get("/readyz")).json()
        assert ready["details"]["cache"]["up"] is False
        await asyncio.sleep(max(0.0, paused_at + 1.7 - time.monotonic()))  # the pause is over
        status, body, _ = await revoke(client, deployment)
        assert status == 200, body
        assert redis_server.cli("EXISTS", MARKER_KEY) == "1"
        await never_served(client, deployment, old)
