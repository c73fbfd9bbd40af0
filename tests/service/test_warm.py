"""Keep-warm through the service: ``POST /v1/usersig/warm`` (counts, auth, limits, every bad
input a JSON 4xx), ``/readyz`` and ``/metrics`` showing keep-warm, and a token kept warm by
the service's own loop with the real engine and a real Redis."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import (
    LIMITED_KEY,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    expect_error,
    write_config,
)
from tests.support import RedisServer

WARM = "/v1/usersig/warm"
ROOT = Path(__file__).resolve().parents[2]


def keep_warm_config(
    deployment: Deployment, server: RedisServer, name: str = "warm.toml", **apps: object
) -> Path:
    """The deployment on a real Redis, keep-warm on for the v2 app."""
    return write_config(
        deployment.directory,
        name=name,
        apps={V2_APP: {"keep_warm_days": 2, **apps}},
        cache={"url": server.url, "timeout": 0.5},
    )


def metric(text: str, name: str, sdkappid: int | None = None) -> float:
    labels = "" if sdkappid is None else f'{{sdkappid="{sdkappid}"}}'
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name}{labels} not in /metrics"
    return float(found.group(1))


class TestWarmEndpoint:
    async def test_counts_signed_already_warm_and_refused(
        self, make_client: ClientFactory, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """Userids without a cached token are signed, those with one are already warm,
        those the app's policy refuses are refused with their error; a repeated userid
        counts once; a later request for a warmed userid is a cache hit; the warmed users
        are tracked by keep-warm.

        Catches: warm not storing what it signs, or counting a cached token as signed."""
        client = await make_client(keep_warm_config(deployment, redis_server))
        body = {"sdkappid": V2_APP, "userids": ["a", "b", "bad\nid", "a"]}
        response = await client.post(WARM, json=body, headers=deployment.headers())
        assert response.status == 200, await response.text()
        answer = await response.json()
        assert (answer["signed"], answer["already_warm"], answer["refused"]) == (2, 0, 1)
        assert answer["refusals"][0]["userid"] == "bad\nid"
        assert answer["refusals"][0]["error"]["code"] == "invalid_userid"
        assert answer["keep_warm_days"] == 2
        again = await (await client.post(WARM, json=body, headers=deployment.headers())).json()
        assert (again["signed"], again["already_warm"], again["refused"]) == (0, 2, 1)
        token = await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "b"}, headers=deployment.headers()
        )
        assert (await token.json())["cached"] is True
        await asyncio.sleep(0.05)  # the marks ride the write of the iteration
        assert redis_server.cli("ZCARD", f"signer:kw:{{kw:{V2_APP}}}:due") == "2"
        assert redis_server.cli("ZCARD", f"signer:kw:{{kw:{V2_APP}}}:seen") == "2"

    async def test_works_without_a_shared_cache(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Without a [cache] url (the in-memory cache, keep-warm off) warming still fills
        this process's cache.

        Catches: warm depending on Redis."""
        body = {"sdkappid": V1_APP, "userids": ["x", "y"]}
        first = await (await client.post(WARM, json=body, headers=deployment.headers())).json()
        second = await (await client.post(WARM, json=body, headers=deployment.headers())).json()
        assert (first["signed"], second["already_warm"], first["keep_warm_days"]) == (2, 2, 0)

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"sdkappid": V2_APP, "userids": []}, 422, "invalid_field"),
            ({"sdkappid": V2_APP, "userids": "a"}, 422, "invalid_field"),
            ({"sdkappid": V2_APP}, 422, "invalid_field"),
            ({"sdkappid": V2_APP, "userids": ["a"], "extra": 1}, 422, "invalid_field"),
            ({"sdkappid": 0, "userids": ["a"]}, 422, "invalid_field"),
            ({"sdkappid": 1400009999, "userids": ["a"]}, 403, "forbidden"),
            ({"sdkappid": V2_APP, "userids": ["a"], "expire": 1}, 422, "invalid_expire"),
            (
                {"sdkappid": V2_APP, "userids": [f"u{i}" for i in range(11)]},
                422,
                "too_many_userids",
            ),
        ],
        ids=[
            "empty",
            "not-a-list",
            "missing",
            "unknown-field",
            "sdkappid-0",
            "unknown-app",
            "expire",
            "too-many",
        ],
    )
    async def test_bad_input_is_a_json_4xx(
        self,
        make_client: ClientFactory,
        deployment: Deployment,
        body: dict[str, object],
        status: int,
        code: str,
    ) -> None:
        """Each malformed or refused warm request gets the JSON error a batch would.

        Catches: an unvalidated field reaching the issuer (a 500), or a limit skipped."""
        config = write_config(
            deployment.directory, name="small.toml", server={"max_batch_userids": 10}
        )
        client = await make_client(config)
        response = await client.post(WARM, json=body, headers=deployment.headers())
        await expect_error(response, status, code)

    async def test_malformed_json_and_auth(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Not JSON is 400; no API key is 401; a caller not allowed the app is 403.

        Catches: warm left outside the edge's auth."""
        response = await client.post(
            WARM, data=b"{", headers={**deployment.headers(), "Content-Type": "application/json"}
        )
        await expect_error(response, 400, "malformed_json")
        body = {"sdkappid": V1_APP, "userids": ["a"]}
        await expect_error(await client.post(WARM, json=body), 401, "unauthenticated")
        limited = await client.post(WARM, json=body, headers=deployment.headers(LIMITED_KEY))
        await expect_error(limited, 403, "forbidden")

    async def test_pays_the_rate_limit_per_userid(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A warm request costs the caller's rate limit one token per userid, as a batch.

        Catches: warm as a way around the rate limit."""
        tight = write_config(
            deployment.directory, name="tight.toml", rate_limit={"rate": 1, "burst": 100}
        )
        client = await make_client(tight)
        body = {"sdkappid": V2_APP, "userids": [f"u{i}" for i in range(60)]}
        assert (await client.post(WARM, json=body, headers=deployment.headers())).status == 200
        await expect_error(
            await client.post(WARM, json=body, headers=deployment.headers()), 429, "rate_limited"
        )


class TestVisible:
    async def test_readyz_and_metrics_show_keep_warm(
        self, make_client: ClientFactory, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """/readyz says keep-warm is on, for which app and how many days, and whether it
        is paused; /metrics has its series for that app from the start.

        Catches: keep-warm running invisibly."""
        client = await make_client(keep_warm_config(deployment, redis_server))
        ready = await (await client.get("/readyz")).json()
        warm = ready["details"]["keep_warm"]
        assert warm["enabled"] is True and warm["paused"] is False
        assert warm["apps"][str(V2_APP)]["days"] == 2
        assert (warm["resigned"], warm["late"], warm["failed"]) == (0, 0, 0)
        text = await (await client.get("/metrics")).text()
        for name in ("resigned", "late", "fell_out", "skipped", "failed"):
            assert metric(text, f"signer_keepwarm_{name}_total", V2_APP) == 0
        assert metric(text, "signer_keepwarm_paused") == 0

    async def test_the_keep_warm_alert_rules_name_exported_series(
        self, make_client: ClientFactory, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """Each ``signer_keepwarm_*`` series deploy/prometheus/alerts.yml names is in the
        /metrics of a service with keep-warm on, with the labels the rule groups by (the
        other series are checked against deploy/local, where keep-warm is off)."""
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
        exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
        exprs = [expr for expr in exprs if "signer_keepwarm_" in expr]
        assert len(exprs) >= 2
        client = await make_client(keep_warm_config(deployment, redis_server))
        text = await (await client.get("/metrics")).text()
        exported = {
            sample.name: sample.labels
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        for expr in exprs:
            for name in re.findall(r"\b(signer_keepwarm_\w+)", expr):
                assert name in exported, name
                for label in re.findall(r"by \(([^)]*)\)", expr):
                    assert label in exported[name], (name, label)

    async def test_readyz_says_off_when_no_app_has_it(self, client: TestClient) -> None:
        """Catches: keep-warm reported on when no app asked for it."""
        ready = await (await client.get("/readyz")).json()
        assert ready["details"]["keep_warm"] == {"enabled": False}


class TestKeptWarmByTheService:
    @pytest.mark.slow
    async def test_a_token_is_re_signed_before_it_goes_stale(
        self, make_client: ClientFactory, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """With 20-second tokens (min_remaining 5 s, spread 0.9), the service's own loop
        re-signs a token nobody asks for again before it falls under min_remaining: a
        request once the first token is past its usable end is cached, with
        min_remaining left, and signs nothing.

        Catches: the loop not started with the service, or its re-sign not stored."""
        config = write_config(
            deployment.directory,
            name="short.toml",
            apps={V2_APP: {"keep_warm_days": 1, "default_expire": 20, "min_expire": 1}},
            cache={
                "url": redis_server.url,
                "timeout": 0.5,
                "min_remaining": 5,
                "refresh_ahead": 10,
            },
            extra="\n[keep_warm]\nspread = 0.9\ninterval = 0.1\n",
        )
        client = await make_client(config)
        headers = deployment.headers()
        first = await (
            await client.post(
                "/v1/usersig", json={"sdkappid": V2_APP, "userid": "w"}, headers=headers
            )
        ).json()
        # Until the first token is past its usable end (5 s left): only a re-sign can
        # answer from cache now.
        await asyncio.sleep(max(0.0, first["expires_at"] - 5 + 1 - time.time()))

        def signed(text: str) -> float:
            found = re.findall(r"^signer_tokens_signed_total\{.*\} (\S+)$", text, re.MULTILINE)
            return sum(float(value) for value in found)

        before = await (await client.get("/metrics")).text()
        answer = await (
            await client.post(
                "/v1/usersig", json={"sdkappid": V2_APP, "userid": "w"}, headers=headers
            )
        ).json()
        after = await (await client.get("/metrics")).text()
        assert answer["cached"] is True and answer["expires_at"] > first["expires_at"]
        assert answer["expires_at"] - time.time() >= 5
        resigned = metric(after, "signer_keepwarm_resigned_total", V2_APP)
        assert resigned >= 1 and metric(after, "signer_keepwarm_late_total", V2_APP) == 0
        # no signature on the request's path: any made meanwhile were keep-warm's
        assert signed(after) - signed(before) == resigned - metric(
            before, "signer_keepwarm_resigned_total", V2_APP
        )
