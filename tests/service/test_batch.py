"""POST /v1/usersig/batch answers every userid in order, with errors in place, cached tokens
reused and repeats signed once."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from signer.core import verify
from tests.service.conftest import (
    V1_APP,
    V2_APP,
    Deployment,
)


class TestBatch:
    async def test_results_in_order_with_errors_in_place(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """One result per userid in request order, each invalid userid's error in its place and
        every other token verifiable."""
        userids = ["u0", "bad\nid", "u2", "", "x" * 33, "u5"]
        response = await client.post(
            "/v1/usersig/batch",
            json={"sdkappid": V2_APP, "userids": userids},
            headers=deployment.headers(),
        )
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        results = (await response.json())["results"]
        assert [r["userid"] for r in results] == userids
        assert results[1]["error"]["code"] == "invalid_userid"
        assert results[3]["error"]["code"] == "invalid_userid"
        assert results[4]["error"]["field"] == "userid"
        for index in (0, 2, 5):
            verify(
                results[index]["usersig"],
                userid=userids[index],
                sdkappid=V2_APP,
                key=deployment.secret,
            )

    async def test_cached_and_fresh_mix(self, client: TestClient, deployment: Deployment) -> None:
        """A batch serves the userids already cached from the cache and signs the others."""
        await client.post(
            "/v1/usersig", json={"sdkappid": V1_APP, "userid": "warm"}, headers=deployment.headers()
        )
        results = (
            await (
                await client.post(
                    "/v1/usersig/batch",
                    json={"sdkappid": V1_APP, "userids": ["warm", "cold"]},
                    headers=deployment.headers(),
                )
            ).json()
        )["results"]
        assert [r["cached"] for r in results] == [True, False]

    async def test_batch_signs_a_repeated_userid_once(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A userid repeated in a batch is signed once, and every place gets that token."""
        results = (
            await (
                await client.post(
                    "/v1/usersig/batch",
                    json={"sdkappid": V2_APP, "userids": ["dup"] * 50},
                    headers=deployment.headers(),
                )
            ).json()
        )["results"]
        assert len({r["usersig"] for r in results}) == 1
        metrics = await (await client.get("/metrics")).text()
        assert f'signer_tokens_signed_total{{algorithm="v2",sdkappid="{V2_APP}"}} 1.0' in metrics

    async def test_more_than_10000_userids_is_422(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """10,001 userids, in a body well under the size cap: 422 naming the limit (not a
        413: the body cap is not what refuses it).

        Catches: the max_batch_userids check gone (the batch is signed, 200) or moved
        behind the body cap."""
        raw = b'{"sdkappid": %d, "userids": [%s]}' % (V2_APP, b",".join([b'"u"'] * 10001))
        assert len(raw) < 65536  # the deployment's max_body_bytes
        response = await client.post(
            "/v1/usersig/batch",
            data=raw,
            headers={**deployment.headers(), "Content-Type": "application/json"},
        )
        assert response.status == 422, await response.text()
        error = (await response.json())["error"]
        assert (error["code"], error["field"]) == ("too_many_userids", "userids")
