"""Prometheus metrics. Dashboards rely on these names: change them only with a migration.

HTTP metrics are observed per request. Engine and cache figures are read from their own
counters at scrape time by a collector, so a signature is counted exactly once, where it
was computed (``signer_tokens_signed_total``), whether it came from a single request, a
batch or a cache refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
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
        self.requests = Counter(
            "signer_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "signer_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # label lookups cost microseconds; do each once
            labels = (route, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, engine: Callable[[], Engine], issuer: Callable[[], TokenIssuer]) -> None:
        self.registry.register(_EngineAndCacheCollector(engine, issuer))


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
