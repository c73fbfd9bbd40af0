"""Only a caller with a valid API key is served, only for its own apps, and no faster than its
rate limit and the engine's queue allow."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from tests.service.conftest import (
    LIMITED_KEY,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    expect_error,
    write_config,
)

WILDCARD_KEY = "wildcard-api-key-0a1b2c3d4e5f6789"  # a caller with every sdkappid


class TestAuthentication:
    @pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer "])
    async def test_missing_or_bad_api_key_is_401(
        self, client: TestClient, header: str | None
    ) -> None:
        """A missing, wrong or non-Bearer API key is 401 with WWW-Authenticate, never echoing
        the key."""
        headers = {} if header is None else {"Authorization": header}
        r = await client.post(
            "/v1/usersig", json={"sdkappid": V1_APP, "userid": "u"}, headers=headers
        )
        error = await expect_error(r, 401, "unauthenticated")
        assert "wrong-key" not in str(error) and r.headers["WWW-Authenticate"].startswith("Bearer")


class TestPermission:
    """Which sdkappids a caller may use, and what an unknown one answers."""

    async def test_caller_not_allowed_this_app_is_403(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """An sdkappid outside the caller's list is 403 naming sdkappid; one in it is served."""
        r = await client.post(
            "/v1/usersig",
            json={"sdkappid": V1_APP, "userid": "u"},
            headers=deployment.headers(LIMITED_KEY),
        )
        assert (await expect_error(r, 403, "forbidden"))["field"] == "sdkappid"
        ok = await client.post(
            "/v1/usersig",
            json={"sdkappid": V2_APP, "userid": "u"},
            headers=deployment.headers(LIMITED_KEY),
        )
        assert ok.status == 200

    async def test_unknown_sdkappid_not_in_the_callers_list_is_403(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A caller limited to some apps gets 403 for any other sdkappid, configured or
        not: whether an app exists is not told to a caller who may not use it.

        Catches: the app looked up before the caller's list (a 404 would tell)."""
        r = await client.post(
            "/v1/usersig",
            json={"sdkappid": 1400009999, "userid": "u"},
            headers=deployment.headers(),
        )
        assert (await expect_error(r, 403, "forbidden"))["field"] == "sdkappid"

    async def test_unknown_sdkappid_and_route_are_404(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """An sdkappid no app has, asked by a caller allowed every app, and a path no
        route has: 404 each, with its own code.

        Catches: an unknown app answered as anything but 404 ``unknown_sdkappid`` (the
        caller here may use every sdkappid, so no 403 can stand in for it)."""
        everything = {"name": "everything", "api_key": WILDCARD_KEY}
        client = await make_client(write_config(deployment.directory, extra_callers=[everything]))
        r = await client.post(
            "/v1/usersig",
            json={"sdkappid": 1400009999, "userid": "u"},
            headers=deployment.headers(WILDCARD_KEY),
        )
        assert (await expect_error(r, 404, "unknown_sdkappid"))["field"] == "sdkappid"
        await expect_error(
            await client.get("/v1/nothing", headers=deployment.headers()), 404, "not_found"
        )


class TestRateLimit:
    async def test_rate_limit_is_429_with_retry_after(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A caller past its burst is 429 with Retry-After, and another caller's bucket is
        untouched."""
        tight = write_config(
            deployment.directory, name="tight.toml", rate_limit={"rate": 1, "burst": 3}
        )
        client = await make_client(tight)
        statuses = []
        for _ in range(5):
            r = await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "u"},
                headers=deployment.headers(),
            )
            statuses.append(r.status)
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
        assert int(r.headers["Retry-After"]) >= 1
        limited = await client.post(
            "/v1/usersig",
            json={"sdkappid": V2_APP, "userid": "u"},
            headers=deployment.headers(LIMITED_KEY),
        )
        assert limited.status == 200  # buckets are per caller

    async def test_batches_pay_the_rate_limit_per_userid(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A batch costs the rate limit one token per userid: a second batch of 60 past a burst
        of 100 is 429."""
        tight = write_config(
            deployment.directory, name="tight.toml", rate_limit={"rate": 1, "burst": 100}
        )
        client = await make_client(tight)
        body = {"sdkappid": V2_APP, "userids": [f"u{i}" for i in range(60)]}
        assert (
            await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())
        ).status == 200
        assert (
            await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())
        ).status == 429


class TestOverload:
    async def test_overloaded_engine_is_503_with_retry_after(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """Past engine.max_queued waiting tokens, requests are refused at once with 503."""
        small = write_config(
            deployment.directory,
            name="small.toml",
            server={"max_batch_userids": 30},
            engine={"max_queued": 30},
        )
        client = await make_client(small)

        async def batch(n: int) -> object:
            body = {"sdkappid": V1_APP, "userids": [f"b{n}_{i}" for i in range(30)]}
            return await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())

        responses = await asyncio.gather(*(batch(n) for n in range(10)))
        statuses = [r.status for r in responses]  # type: ignore[attr-defined]
        assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
        refused = next(r for r in responses if r.status == 503)  # type: ignore[attr-defined]
        await expect_error(refused, 503, "overloaded")
        assert refused.headers["Retry-After"] == "1"  # type: ignore[attr-defined]
