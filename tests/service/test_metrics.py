"""The HTTP metrics kept in plain numbers and exposed to Prometheus at scrape time."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from signer.service.metrics import LATENCY_BUCKETS, ServiceMetrics


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestHttpMetrics:
    def test_buckets_are_cumulative_and_a_bound_counts_as_less_or_equal(self) -> None:
        """A latency equal to a bucket bound falls in that bucket ("le"), and every
        bucket counts all the observations at or below it, as Prometheus defines."""
        metrics = ServiceMetrics()
        for seconds in (0.0001, LATENCY_BUCKETS[0], 0.003, 0.003, 99.0):
            metrics.observe("/v1/usersig", "POST", 200, seconds)
        metrics.observe("/v1/usersig", "POST", 429, 0.0002)
        found = samples(metrics)
        labels = (("method", "POST"), ("route", "/v1/usersig"), ("status", "200"))

        def bucket(le: str) -> float:
            return found[("signer_http_request_duration_seconds_bucket", (("le", le), *labels))]

        assert bucket("0.0005") == 2
        assert bucket("0.0025") == 2
        assert bucket("0.005") == 4
        assert bucket("2.5") == 4
        assert bucket("+Inf") == 5
        assert found[("signer_http_request_duration_seconds_count", labels)] == 5
        assert abs(found[("signer_http_request_duration_seconds_sum", labels)] - 99.0066) < 1e-9
        assert found[("signer_http_requests_total", labels)] == 5
        limited = (("method", "POST"), ("route", "/v1/usersig"), ("status", "429"))
        assert found[("signer_http_requests_total", limited)] == 1

    def test_nothing_observed_exposes_nothing(self) -> None:
        """A fresh service exposes the families without inventing series."""
        text = generate_latest(ServiceMetrics().registry).decode()
        assert "# TYPE signer_http_requests_total counter" in text
        assert "signer_http_requests_total{" not in text


class TestMetricLabels:
    async def test_a_made_up_method_does_not_make_a_series_of_its_own(
        self, client: TestClient
    ) -> None:
        """Methods outside the usual set (WebDAV's, say: the HTTP parser takes them) are
        counted as OTHER, so the label stays a bounded set."""
        for method in ("PROPFIND", "MKCOL", "SEARCH"):
            r = await client.request(method, "/healthz")
            assert r.status == 405
        text = await (await client.get("/metrics")).text()
        assert 'method="OTHER",route="/healthz",status="405"} 3.0' in text
        assert "PROPFIND" not in text and "MKCOL" not in text


class TestKeepWarmAcrossProcesses:
    def test_tracked_and_paused_are_the_largest_counters_the_sum(self, tmp_path: Path) -> None:
        """Several processes each count the same shared set: signer_keepwarm_tracked is
        the largest of their counts, not their sum; one paused process is a pause; their
        re-sign counters add up.

        Catches: the gauges summed like counters (N processes would report N times the
        tracked users)."""
        for token, tracked, paused, resigned in (("a", 90, 0, 5), ("b", 100, 1, 7)):
            snapshot = [
                [
                    "signer_keepwarm_tracked",
                    "",
                    "gauge",
                    [["signer_keepwarm_tracked", {"sdkappid": "1"}, tracked]],
                ],
                ["signer_keepwarm_paused", "", "gauge", [["signer_keepwarm_paused", {}, paused]]],
                [
                    "signer_keepwarm_resigned",
                    "",
                    "counter",
                    [["signer_keepwarm_resigned_total", {"sdkappid": "1"}, resigned]],
                ],
            ]
            (tmp_path / f"{os.getpid()}-{token}.json").write_bytes(orjson.dumps(snapshot))
        text = ServiceMetrics(tmp_path).exposition().decode()
        assert 'signer_keepwarm_tracked{sdkappid="1"} 100.0' in text
        assert "signer_keepwarm_paused 1.0" in text
        assert 'signer_keepwarm_resigned_total{sdkappid="1"} 12.0' in text
