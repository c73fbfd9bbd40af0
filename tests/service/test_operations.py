"""What operators and their tools rely on answers as they expect: health and readiness (HEAD
too), request ids, metrics, and JSON 404s and 405s for routes that do not exist."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.service.conftest import (
    V1_APP,
    V2_APP,
    Deployment,
    expect_error,
)


class TestHealth:
    async def test_health_and_readiness(self, client: TestClient) -> None:
        """/healthz says ok and /readyz says ready, with the cache backend up."""
        assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
        ready = await client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200 and body["status"] == "ready"
        assert body["details"]["cache"] == {"backend": "memory", "up": True}

    async def test_head_on_health_routes(self, client: TestClient) -> None:
        """HEAD on /healthz and /readyz is 200."""
        assert (await client.head("/healthz")).status == 200
        assert (await client.head("/readyz")).status == 200


class TestRequestId:
    async def test_request_id_is_echoed_or_made(self, client: TestClient) -> None:
        """A well-formed X-Request-ID is echoed; a malformed one is replaced by a fresh
        32-character id."""
        r = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
        assert r.headers["X-Request-ID"] == "trace-123"
        r = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert (
            r.headers["X-Request-ID"] != "bad id\twith spaces"
            and len(r.headers["X-Request-ID"]) == 32
        )


class TestMetrics:
    async def test_metrics_names_dashboards_rely_on(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """/metrics has the token, request, engine and cache series dashboards rely on,
        counting the traffic sent."""
        for userid in ("m1", "m2", "m1"):
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V1_APP, "userid": userid},
                headers=deployment.headers(),
            )
        await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "m3"}, headers=deployment.headers()
        )
        text = await (await client.get("/metrics")).text()
        assert f'signer_tokens_signed_total{{algorithm="v1",sdkappid="{V1_APP}"}} 2.0' in text
        assert f'signer_tokens_signed_total{{algorithm="v2",sdkappid="{V2_APP}"}} 1.0' in text
        assert (
            'signer_http_requests_total{method="POST",route="/v1/usersig",status="200"} 4.0' in text
        )
        assert "signer_http_request_duration_seconds_bucket" in text
        assert "signer_engine_batch_size_bucket" in text and "signer_engine_queue_depth 0.0" in text
        assert 'signer_cache_lookups_total{result="hit"} 1.0' in text
        assert 'signer_cache_lookups_total{result="miss"} 3.0' in text
        assert "signer_cache_up 1.0" in text


class TestRoutes:
    """Paths and methods no route has: JSON errors, never aiohttp's plain text."""

    async def test_wrong_method_is_405(self, client: TestClient, deployment: Deployment) -> None:
        """A method a route does not take is a JSON 405 with the Allow header and a request id."""
        r = await client.put("/v1/usersig", json={}, headers=deployment.headers())
        await expect_error(r, 405, "method_not_allowed")
        assert "POST" in r.headers["Allow"]
        r = await client.post("/healthz")
        await expect_error(r, 405, "method_not_allowed")
        assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
        assert r.headers["X-Request-ID"]

    async def test_unknown_paths_anywhere_are_json_404s(self, client: TestClient) -> None:
        """Unknown routes and docs assets, traversal attempts included, answer JSON 404s
        with a request id, never aiohttp's plain text or a file outside the bundle."""
        for path in (
            "/",
            "/v2/usersig",
            "/docs/static/nope.js",
            "/docs/static/..%2F..%2Fapp.py",
            "/docs/static/../../app.py",
        ):
            r = await client.get(path)
            await expect_error(r, 404, "not_found")
            assert r.headers["X-Request-ID"]
        assert (await client.get("/docs/static/swagger-ui.css")).status == 200
