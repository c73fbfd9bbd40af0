"""Prometheus metrics. Dashboards rely on these names: change them only with a migration.

HTTP metrics are observed per request. Engine and cache figures are read from their own
counters at scrape time by a collector, so a signature is counted exactly once, where it
was computed (``signer_tokens_signed_total``), whether it came from a single request, a
batch or a cache refresh.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from signer.cache import TokenIssuer
from signer.engine import BATCH_SIZE_BUCKETS, Engine

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpStats()
        self.registry.register(_HttpCollector(self.http))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.observe(route, method, status, seconds)

    def watch(self, engine: Callable[[], Engine], issuer: Callable[[], TokenIssuer]) -> None:
        self.registry.register(_EngineAndCacheCollector(engine, issuer))


class HttpStats:
    """Request counts and latency histograms by (route, method, status), in plain numbers.

    The event loop is the only writer, so prometheus_client's per-value locks (about 2 µs
    a request for a counter and a histogram) buy nothing; the figures are handed over at
    scrape time instead, under the same names and buckets."""

    def __init__(self) -> None:
        # per key: [count, sum of seconds, one count per bucket of LATENCY_BUCKETS + +Inf]
        self.series: dict[tuple[str, str, int], list[Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        series = self.series.get((route, method, status))
        if series is None:
            series = self.series[(route, method, status)] = [0, 0.0, [0] * _BUCKETS]
        series[0] += 1
        series[1] += seconds
        series[2][bisect_left(LATENCY_BUCKETS, seconds)] += 1  # "le": first bound >= value


_BUCKETS = len(LATENCY_BUCKETS) + 1
_BOUNDS = [*(str(bound) for bound in LATENCY_BUCKETS), "+Inf"]


class _HttpCollector(Collector):
    def __init__(self, stats: HttpStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily(
            "signer_http_requests", "HTTP requests by route, method and status.", labels=labels
        )
        latency = HistogramMetricFamily(
            "signer_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            labels=labels,
        )
        for (route, method, status), (count, total, buckets) in sorted(self._stats.series.items()):
            values = [route, method, str(status)]
            requests.add_metric(values, count)
            latency.add_metric(
                values, list(zip(_BOUNDS, itertools.accumulate(buckets), strict=True)), total
            )
        yield requests
        yield latency


class _EngineAndCacheCollector(Collector):
    def __init__(self, engine: Callable[[], Engine], issuer: Callable[[], TokenIssuer]) -> None:
        self._engine = engine
        self._issuer = issuer

    def collect(self) -> Iterator[Metric]:
        stats = self._engine().stats
        signed = CounterMetricFamily(
            "signer_tokens_signed",
            "Signatures actually computed, by sdkappid and algorithm.",
            labels=["sdkappid", "algorithm"],
        )
        for (sdkappid, algorithm), count in sorted(stats.signed.items()):
            signed.add_metric([str(sdkappid), algorithm], count)
        yield signed
        cumulative, buckets = 0, []
        for bound, count in zip(BATCH_SIZE_BUCKETS, stats.batch_sizes, strict=False):
            cumulative += count
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", stats.batches))
        batch = HistogramMetricFamily(
            "signer_engine_batch_size", "Items per batch sent to the worker pool."
        )
        batch.add_metric([], buckets, sum_value=stats.batch_items)
        yield batch
        yield GaugeMetricFamily(
            "signer_engine_queue_depth", "Sign requests queued or in flight.", stats.queue_depth
        )
        yield CounterMetricFamily(
            "signer_engine_worker_restarts",
            "Worker pool rebuilds after a crash.",
            stats.worker_restarts,
        )
        yield CounterMetricFamily(
            "signer_engine_rejected",
            "Sign requests refused because the queue was full.",
            stats.rejected_overloaded,
        )
        lookups = CounterMetricFamily(
            "signer_cache_lookups", "Token cache lookups by result.", labels=["result"]
        )
        for result in ("hit", "miss", "stale", "mismatch"):
            lookups.add_metric([result], self._issuer().lookups[result])
        yield lookups
        cache = self._issuer().cache
        yield GaugeMetricFamily(
            "signer_cache_up", "1 if the token cache answers, else 0.", int(cache.healthy())
        )
