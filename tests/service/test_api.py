"""The HTTP API end to end: every endpoint, every error status, auth and rate limits."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import TLSSigAPIv2
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from signer.core import decode, verify
from signer.service.handlers import STATE
from tests.service.conftest import (
    API_KEY,
    LIMITED_KEY,
    OTHER_APP,
    SECRET,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    write_config,
)

WILDCARD_KEY = "wildcard-api-key-0a1b2c3d4e5f6789"  # a caller with every sdkappid


class TestUserSig:
    async def test_post_issues_a_verifiable_token_then_serves_it_from_cache(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A fresh token the first time, the same token from cache the second."""
        body = {"sdkappid": V1_APP, "userid": "alice"}
        first = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert first.status == 200
        assert first.headers["Cache-Control"] == "no-store"
        data = await first.json()
        assert set(data) == {
            "usersig",
            "sdkappid",
            "userid",
            "issued_at",
            "expires_at",
            "key_version",
            "cached",
        }
        assert (data["userid"], data["key_version"], data["cached"]) == ("alice", "2", False)
        assert data["expires_at"] - data["issued_at"] == 86400  # the app's default_expire
        verify(data["usersig"], userid="alice", sdkappid=V1_APP, key=deployment.v1_key.public_key())
        again = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        assert again["cached"] is True and again["usersig"] == data["usersig"]

    async def test_get_is_the_same_operation(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        response = await client.get(
            "/v1/usersig",
            params={"sdkappid": str(V2_APP), "userid": "bob", "expire": "600"},
            headers=deployment.headers(),
        )
        data = await response.json()
        assert response.status == 200 and data["expires_at"] - data["issued_at"] == 600
        verify(data["usersig"], userid="bob", sdkappid=V2_APP, key=deployment.secret)

    async def test_v2_matches_tencents_library(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Same fields as tls-sig-api-v2 would issue; its TLS.sig for our issue time is ours.
        The service signs v2 in its workers, as v1 (inline HMAC cost the loop more)."""
        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "中文", "expire": 3600},
                headers=deployment.headers(),
            )
        ).json()
        ours = decode(data["usersig"])
        # The library reads the clock as ``time.time``: the process's own, put back after.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TLSSigAPIv2.time, "time", lambda: ours["TLS.time"])
            theirs = decode(TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("中文", 3600))
        assert ours == theirs
        assert client.app[STATE].engine.stats.signed_inline == 0

    async def test_userbuf_is_embedded(self, client: TestClient, deployment: Deployment) -> None:
        userbuf = base64.b64encode(b"\x00\x01opaque").decode()
        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V1_APP, "userid": "u", "userbuf": userbuf},
                headers=deployment.headers(),
            )
        ).json()
        checked = verify(
            data["usersig"], userid="u", sdkappid=V1_APP, key=deployment.v1_key.public_key()
        )
        assert checked.userbuf == userbuf


class TestBatch:
    async def test_results_in_order_with_errors_in_place(
        self, client: TestClient, deployment: Deployment
    ) -> None:
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


class TestPrivateMapKeyAndVerify:
    @pytest.mark.parametrize("room", [{"room_id": 1234}, {"room_str": "会议室"}])
    async def test_privatemapkey(
        self, client: TestClient, deployment: Deployment, room: dict[str, object]
    ) -> None:
        data = await (
            await client.post(
                "/v1/privatemapkey",
                json={"sdkappid": V2_APP, "userid": "u", "privilege": 5, **room},
                headers=deployment.headers(),
            )
        ).json()
        checked = verify(data["usersig"], userid="u", sdkappid=V2_APP, key=deployment.secret)
        assert checked.privilege_map is not None and checked.privilege_map.privilege == 5

    async def test_privatemapkey_needs_one_room(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        response = await client.post(
            "/v1/privatemapkey",
            json={"sdkappid": V2_APP, "userid": "u"},
            headers=deployment.headers(),
        )
        assert response.status == 422

    async def test_verify_ok_and_the_reasons_it_fails(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        token = (
            await (
                await client.post(
                    "/v1/usersig",
                    json={"sdkappid": V1_APP, "userid": "carol"},
                    headers=deployment.headers(),
                )
            ).json()
        )["usersig"]

        async def check(**body: object) -> dict[str, object]:
            response = await client.post(
                "/v1/verify", json={"sdkappid": V1_APP, **body}, headers=deployment.headers()
            )
            assert response.status == 200
            return dict(await response.json())

        ok = await check(userid="carol", usersig=token)
        assert (ok["ok"], ok["code"], ok["identifier"], ok["key_version"]) == (
            True,
            0,
            "carol",
            "2",
        )
        wrong_user = await check(userid="dave", usersig=token)
        assert (wrong_user["ok"], wrong_user["code"], wrong_user["identifier"]) == (
            False,
            13,
            "carol",
        )
        expired = await check(userid="carol", usersig=token, now=2**32 - 1)
        assert expired["code"] == 9 and expired["expires_at"]
        garbage = await check(userid="carol", usersig="not a token")
        assert garbage["code"] == 2

    async def test_verify_accepts_tokens_of_the_previous_key(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """During a rotation, tokens signed with the old key still verify, and say so."""
        from signer.core import V1Signer

        old_token = V1Signer(V1_APP, deployment.old_v1_key).sign("erin").usersig
        data = await (
            await client.post(
                "/v1/verify",
                json={"sdkappid": V1_APP, "userid": "erin", "usersig": old_token},
                headers=deployment.headers(),
            )
        ).json()
        assert (data["ok"], data["key_version"]) == (True, "1")


class TestErrors:
    async def _error(self, response: object, status: int, code: str) -> dict[str, object]:
        assert response.status == status, await response.text()  # type: ignore[attr-defined]
        body = await response.json()  # type: ignore[attr-defined]
        assert set(body) == {"error"} and body["error"]["code"] == code
        assert "Traceback" not in str(body)
        return dict(body["error"])

    async def test_malformed_json_is_400(self, client: TestClient, deployment: Deployment) -> None:
        r = await client.post(
            "/v1/usersig",
            data=b"{nope",
            headers={**deployment.headers(), "Content-Type": "application/json"},
        )
        await self._error(r, 400, "malformed_json")
        r = await client.post(
            "/v1/usersig",
            data=b"[1]",
            headers={**deployment.headers(), "Content-Type": "application/json"},
        )
        await self._error(r, 400, "malformed_json")

    @pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer "])
    async def test_missing_or_bad_api_key_is_401(
        self, client: TestClient, header: str | None
    ) -> None:
        headers = {} if header is None else {"Authorization": header}
        r = await client.post(
            "/v1/usersig", json={"sdkappid": V1_APP, "userid": "u"}, headers=headers
        )
        error = await self._error(r, 401, "unauthenticated")
        assert "wrong-key" not in str(error) and r.headers["WWW-Authenticate"].startswith("Bearer")

    async def test_caller_not_allowed_this_app_is_403(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        r = await client.post(
            "/v1/usersig",
            json={"sdkappid": V1_APP, "userid": "u"},
            headers=deployment.headers(LIMITED_KEY),
        )
        assert (await self._error(r, 403, "forbidden"))["field"] == "sdkappid"
        ok = await client.post(
            "/v1/usersig",
            json={"sdkappid": V2_APP, "userid": "u"},
            headers=deployment.headers(LIMITED_KEY),
        )
        assert ok.status == 200

    async def test_unknown_sdkappid_and_route_are_404(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """An sdkappid no app has, asked by a caller allowed every app, and a path no
        route has: 404 each, with its own code.

        Catches: an unknown app answered as anything but 404 ``unknown_sdkappid`` (the
        caller here may use every sdkappid, so no 403 can stand in for it)."""
        extra = f'\n[[callers]]\nname = "everything"\napi_key = "{WILDCARD_KEY}"\n'
        client = await make_client(write_config(deployment.directory, extra))
        r = await client.post(
            "/v1/usersig",
            json={"sdkappid": 1400009999, "userid": "u"},
            headers=deployment.headers(WILDCARD_KEY),
        )
        assert (await self._error(r, 404, "unknown_sdkappid"))["field"] == "sdkappid"
        await self._error(
            await client.get("/v1/nothing", headers=deployment.headers()), 404, "not_found"
        )

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
        assert (await self._error(r, 403, "forbidden"))["field"] == "sdkappid"

    async def test_wrong_method_is_405(self, client: TestClient, deployment: Deployment) -> None:
        r = await client.put("/v1/usersig", json={}, headers=deployment.headers())
        await self._error(r, 405, "method_not_allowed")
        assert "POST" in r.headers["Allow"]
        r = await client.post("/healthz")
        await self._error(r, 405, "method_not_allowed")
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
            await self._error(r, 404, "not_found")
            assert r.headers["X-Request-ID"]
        assert (await client.get("/docs/static/swagger-ui.css")).status == 200

    async def test_body_over_the_cap_is_413(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        big = {"sdkappid": V2_APP, "userids": ["x" * 30] * 4000}
        await self._error(
            await client.post("/v1/usersig/batch", json=big, headers=deployment.headers()),
            413,
            "body_too_large",
        )

    async def test_not_json_is_415(self, client: TestClient, deployment: Deployment) -> None:
        r = await client.post(
            "/v1/usersig",
            data="sdkappid=1",
            headers={**deployment.headers(), "Content-Type": "application/x-www-form-urlencoded"},
        )
        await self._error(r, 415, "unsupported_media_type")

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"sdkappid": V1_APP, "userid": "a\nb"}, "invalid_userid", "userid"),
            ({"sdkappid": V1_APP, "userid": "x" * 33}, "invalid_userid", "userid"),
            ({"sdkappid": V1_APP, "userid": "u", "expire": 10}, "invalid_expire", "expire"),
            ({"sdkappid": V1_APP, "userid": "u", "expire": 0}, "invalid_field", "expire"),
            ({"sdkappid": "1400000001", "userid": "u"}, "invalid_field", "sdkappid"),
            ({"sdkappid": V1_APP}, "invalid_field", "userid"),
            ({"sdkappid": V1_APP, "userid": "u", "surprise": 1}, "invalid_field", "surprise"),
            ({"sdkappid": V1_APP, "userid": "u", "userbuf": "%%%"}, "invalid_field", "userbuf"),
        ],
    )
    async def test_invalid_fields_are_422_naming_the_field(
        self,
        client: TestClient,
        deployment: Deployment,
        body: dict[str, object],
        code: str,
        field: str,
    ) -> None:
        r = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert (await self._error(r, 422, code))["field"] == field

    async def test_rate_limit_is_429_with_retry_after(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        config = (
            write_config(deployment.directory)
            .read_text()
            .replace("rate = 1000\nburst = 1000", "rate = 1\nburst = 3")
        )
        (deployment.directory / "tight.toml").write_text(config)
        client = await make_client(deployment.directory / "tight.toml")
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

    async def test_overloaded_engine_is_503_with_retry_after(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """Past engine.max_queued waiting tokens, requests are refused at once with 503."""
        config = (
            deployment.config.read_text()
            .replace("[engine]\nworkers = 1", "[engine]\nworkers = 1\nmax_queued = 30")
            .replace("[server]", "[server]\nmax_batch_userids = 30")
        )
        (deployment.directory / "small.toml").write_text(config)
        client = await make_client(deployment.directory / "small.toml")

        async def batch(n: int) -> object:
            body = {"sdkappid": V1_APP, "userids": [f"b{n}_{i}" for i in range(30)]}
            return await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())

        responses = await asyncio.gather(*(batch(n) for n in range(10)))
        statuses = [r.status for r in responses]  # type: ignore[attr-defined]
        assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
        refused = next(r for r in responses if r.status == 503)  # type: ignore[attr-defined]
        await self._error(refused, 503, "overloaded")
        assert refused.headers["Retry-After"] == "1"  # type: ignore[attr-defined]


class TestOperations:
    async def test_health_and_readiness(self, client: TestClient) -> None:
        assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
        ready = await client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200 and body["status"] == "ready"
        assert body["details"]["cache"] == {"backend": "memory", "up": True}

    async def test_request_id_is_echoed_or_made(self, client: TestClient) -> None:
        r = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
        assert r.headers["X-Request-ID"] == "trace-123"
        r = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert (
            r.headers["X-Request-ID"] != "bad id\twith spaces"
            and len(r.headers["X-Request-ID"]) == 32
        )

    async def test_metrics_names_dashboards_rely_on(
        self, client: TestClient, deployment: Deployment
    ) -> None:
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

    async def test_other_app_inline_secret(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        from signer.core import HmacSecret

        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": OTHER_APP, "userid": "z"},
                headers=deployment.headers(API_KEY),
            )
        ).json()
        verify(data["usersig"], userid="z", sdkappid=OTHER_APP, key=HmacSecret(b"another-secret"))


class TestReviewFindings:
    """Behaviours a review of the service asked for, each pinned by a test."""

    async def test_get_rejects_query_bytes_that_are_not_utf8(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        r = await client.get(
            f"/v1/usersig?sdkappid={V1_APP}&userid=%FF", headers=deployment.headers()
        )
        assert r.status == 422

    @pytest.mark.parametrize(
        "sdkappid", ["+1400000001", "1_400_000_001", " 1400000001", "1400000001.0"]
    )
    async def test_get_takes_plain_digits_only(
        self, client: TestClient, deployment: Deployment, sdkappid: str
    ) -> None:
        r = await client.get(
            "/v1/usersig",
            params={"sdkappid": sdkappid, "userid": "u"},
            headers=deployment.headers(),
        )
        assert r.status == 422

    async def test_get_refuses_a_repeated_query_parameter(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """``?userid=a&userid=b`` is 422 naming the parameter: which userid was meant is
        unknown, so neither is signed.

        Catches: the first (or last) value quietly used, as a plain dict of the query
        would."""
        r = await client.get(
            f"/v1/usersig?sdkappid={V1_APP}&userid=a&userid=b", headers=deployment.headers()
        )
        assert r.status == 422, await r.text()
        error = (await r.json())["error"]
        assert (error["code"], error["field"]) == ("invalid_field", "userid")
        assert "'userid' is given more than once" in error["message"]

    @pytest.mark.parametrize(
        ("method", "expire"),
        [("POST", 1e23), ("POST", 1.5), ("POST", 2**32), ("POST", "600"), ("GET", "9" * 5000)],
    )
    async def test_an_integer_out_of_any_range_is_told_its_range(
        self, client: TestClient, deployment: Deployment, method: str, expire: object
    ) -> None:
        """Whatever is wrong with an integer (too large for 32 bits or for any integer, a
        fraction, a string in JSON), the 422 says the range the field takes.

        Catches: pydantic's own wording ("Input should be a valid integer", "exceeded
        maximum size"), which does not tell the client what to send."""
        if method == "GET":
            r = await client.get(
                f"/v1/usersig?sdkappid={V1_APP}&userid=u&expire={expire}",
                headers=deployment.headers(),
            )
        else:
            body = {"sdkappid": V1_APP, "userid": "u", "expire": expire}
            r = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert r.status == 422, await r.text()
        error = (await r.json())["error"]
        assert error["field"] == "expire"
        assert error["message"] == "expire: must be a whole number from 1 to 4294967295"

    async def test_head_on_health_routes(self, client: TestClient) -> None:
        assert (await client.head("/healthz")).status == 200
        assert (await client.head("/readyz")).status == 200

    @pytest.mark.parametrize(
        ("encoding", "status", "code"),
        [("gzip", 400, "malformed_body"), ("compress", 415, "unsupported_content_encoding")],
    )
    async def test_a_body_not_in_its_content_encoding_is_refused(
        self, client: TestClient, deployment: Deployment, encoding: str, status: int, code: str
    ) -> None:
        """Plain JSON labelled gzip cannot be inflated (400); a coding the service cannot
        undo is refused by name (415, RFC 9110), not parsed as if it were plain JSON."""
        r = await client.post(
            "/v1/usersig",
            data=b'{"sdkappid": 1400000002, "userid": "a"}',
            headers={
                **deployment.headers(),
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        error = (await r.json())["error"]
        assert r.status == status and error["code"] == code
        if status == 415:
            assert "gzip" in error["message"] and encoding in error["message"]

    @pytest.mark.parametrize(
        ("codings", "status"), [([""], 200), (["identity"], 200), (["gzip", "compress"], 415)]
    )
    async def test_content_encoding_headers_are_all_checked(
        self, client: TestClient, deployment: Deployment, codings: list[str], status: int
    ) -> None:
        """An empty coding is none; with two headers aiohttp would undo only one, so a
        second (unsupported or different) coding is refused, whichever header it is in."""
        headers = CIMultiDict({**deployment.headers(), "Content-Type": "application/json"})
        for coding in codings:
            headers.add("Content-Encoding", coding)
        r = await client.post(
            "/v1/usersig", data=b'{"sdkappid": 1400000002, "userid": "a"}', headers=headers
        )
        assert r.status == status

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
    async def test_compressed_bodies_are_read_and_bombs_are_413(
        self, client: TestClient, deployment: Deployment, encoding: str
    ) -> None:
        """A compressed body is accepted; one that inflates past max_body_bytes is a 413,
        whatever its compressed size (the cap counts decompressed bytes)."""
        import zlib

        import brotli

        try:
            from compression import zstd  # type: ignore[import-not-found, unused-ignore]
        except ImportError:  # before Python 3.14
            from backports import zstd  # type: ignore[no-redef, unused-ignore]

        def pack(data: bytes) -> bytes:
            if encoding == "br":
                return bytes(brotli.compress(data))
            if encoding == "zstd":
                return zstd.compress(data)
            wbits = 31 if encoding == "gzip" else 15
            compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
            return compressor.compress(data) + compressor.flush()

        headers = {
            **deployment.headers(),
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
        }
        body = json.dumps({"sdkappid": V2_APP, "userid": "zipped"}).encode()
        r = await client.post("/v1/usersig", data=pack(body), headers=headers)
        assert r.status == 200 and (await r.json())["userid"] == "zipped"
        bomb = pack(b'{"sdkappid": 1400000002, "userid": "' + b" " * (8 << 20) + b'"}')
        assert len(bomb) < 64 * 1024  # under the cap as sent
        r = await client.post("/v1/usersig", data=bomb, headers=headers)
        assert r.status == 413 and (await r.json())["error"]["code"] == "body_too_large"

    async def test_empty_userbuf_is_not_the_same_token_as_none(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        plain = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "ub"},
                headers=deployment.headers(),
            )
        ).json()
        empty = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "ub", "userbuf": ""},
                headers=deployment.headers(),
            )
        ).json()
        assert empty["cached"] is False and empty["usersig"] != plain["usersig"]

    async def test_batch_signs_a_repeated_userid_once(
        self, client: TestClient, deployment: Deployment
    ) -> None:
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

    async def test_batches_pay_the_rate_limit_per_userid(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        config = deployment.config.read_text().replace(
            "rate = 1000\nburst = 1000", "rate = 1\nburst = 100"
        )
        (deployment.directory / "tight.toml").write_text(config)
        client = await make_client(deployment.directory / "tight.toml")
        body = {"sdkappid": V2_APP, "userids": [f"u{i}" for i in range(60)]}
        assert (
            await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())
        ).status == 200
        assert (
            await client.post("/v1/usersig/batch", json=body, headers=deployment.headers())
        ).status == 429

    async def test_new_key_without_new_version_retires_cached_tokens(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """Replacing a leaked secret and reloading must not keep serving old tokens."""
        from signer.config import load_settings
        from signer.core import HmacSecret

        client = await make_client()
        body = {"sdkappid": V2_APP, "userid": "rot"}
        old = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        (deployment.directory / "keys" / "app2" / "secret").write_text("a brand new secret")
        await client.app[STATE].reload(load_settings(deployment.config))
        new = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        assert new["cached"] is False and new["usersig"] != old["usersig"]
        verify(new["usersig"], userid="rot", sdkappid=V2_APP, key=HmacSecret(b"a brand new secret"))


class TestSlowClients:
    async def test_a_trickled_body_gets_408_and_a_prompt_one_is_untimed(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A client that stops sending half-way through its body is answered 408 (JSON)
        after server.body_timeout instead of holding the request open for ever."""
        slow = deployment.directory / "slow.toml"
        slow.write_text(
            deployment.config.read_text().replace(
                "max_body_bytes = 65536", "max_body_bytes = 65536\nbody_timeout = 0.3"
            )
        )
        client = await make_client(slow)
        assert client.port is not None
        reader, writer = await asyncio.open_connection(client.host, client.port)
        body = json.dumps({"sdkappid": V2_APP, "userid": "slow"}).encode()
        writer.write(
            b"POST /v1/usersig HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert 0.25 <= time.monotonic() - started < 3
        assert head.startswith(b"HTTP/1.1 408")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        error = json.loads(await reader.readexactly(length))["error"]
        assert error["code"] == "body_timeout"
        writer.close()
        # The same server still answers a normal request at once.
        ok = await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "fast"}, headers=deployment.headers()
        )
        assert ok.status == 200


class TestReload:
    async def test_a_reload_keeps_the_callers_rate_limit_buckets(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A SIGHUP with unchanged limits must not hand every caller a fresh burst."""
        from signer.config import load_settings

        tight = deployment.directory / "tight.toml"
        tight.write_text(
            deployment.config.read_text().replace(
                "rate = 1000\nburst = 1000", "rate = 0.001\nburst = 3"
            )
        )
        client = await make_client(tight)
        body = {"sdkappid": V2_APP, "userid": "rl"}
        statuses = [
            (await client.post("/v1/usersig", json=body, headers=deployment.headers())).status
            for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        await client.app[STATE].reload(load_settings(tight))
        again = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert again.status == 429

    def test_settings_that_need_a_restart_are_named(self, deployment: Deployment) -> None:
        """What a reload cannot apply (bind address, pool, cache client) is listed, and
        what it does apply is not."""
        from signer.config import load_settings
        from signer.service.state import restart_only_changes

        old = load_settings(deployment.config)
        new = old.model_copy(
            update={
                "server": old.server.model_copy(update={"port": 9999, "max_batch_userids": 5}),
                "engine": old.engine.model_copy(update={"max_batch": 7}),
                "cache": old.cache.model_copy(
                    update={"url": "redis://elsewhere:6379/0", "min_remaining": 60}
                ),
            }
        )
        assert restart_only_changes(old, new) == ["server.port", "engine.max_batch", "cache.url"]
        assert restart_only_changes(old, old) == []


class TestEviction:
    async def test_delete_evicts_every_variant_of_the_user(
        self, client: TestClient, deployment: Deployment
    ) -> None:
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
        assert (await client.delete(f"/v1/usersig/{V2_APP}/u")).status == 401
        assert (
            await client.delete(f"/v1/usersig/{V1_APP}/u", headers=deployment.headers(LIMITED_KEY))
        ).status == 403
        assert (
            await client.delete("/v1/usersig/abc/u", headers=deployment.headers())
        ).status == 422
