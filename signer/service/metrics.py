"""Prometheus metrics. Dashboards rely on these names: change them only with a migration.

HTTP metrics are observed per request. Engine and cache figures are read from their own
counters at scrape time by a collector, so a signature is counted exactly once, where it
was computed (``signer_tokens_signed_total``), whether it came from a single request, a
batch or a cache refresh.
"""

from __future__ import annotations

import itertools
import os
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from signer.cache import AppPolicy, CacheBackend, TokenIssuer
from signer.cache.backends.layered import LayeredCache
from signer.cache.backends.redis import RedisCache
from signer.cache.keepwarm import KeepWarm
from signer.engine import BATCH_SIZE_BUCKETS, Engine
from signer.service.protocol import ConnectionGuard

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """This process's metrics; with ``shared`` (a directory), also those of the sibling
    processes of a supervisor, which each write a snapshot there (:meth:`publish`)."""

    def __init__(self, shared: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpStats()
        self.registry.register(_HttpCollector(self.http))
        self.shared = shared

    def exposition(self) -> bytes:
        """The text format for a scrape: this process's figures, plus its siblings'."""
        if self.shared is None:
            return generate_latest(self.registry)
        self.publish()
        merged = CollectorRegistry(auto_describe=False)
        merged.register(_SharedCollector(self.shared))
        return generate_latest(merged)

    def publish(self) -> None:
        """Write this process's samples where its siblings read them (atomically)."""
        assert self.shared is not None
        families = [
            [m.name, m.documentation, m.type, [[x.name, x.labels, x.value] for x in m.samples]]
            for m in self.registry.collect()
        ]
        target = self.shared / f"{os.getpid()}-{_PROCESS_TOKEN}.json"
        temporary = target.with_suffix(".tmp")
        # Made again if something removed it (a tmp cleaner, or a supervisor in another
        # PID namespace sharing /tmp that took ours for a dead one's).
        self.shared.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary.write_bytes(orjson.dumps(families))
        os.replace(temporary, target)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.observe(route, method, status, seconds)

    def watch(self, engine: Callable[[], Engine], issuer: Callable[[], TokenIssuer]) -> None:
        self.registry.register(_EngineAndCacheCollector(engine, issuer))

    def watch_keep_warm(
        self, warm: Callable[[], KeepWarm | None], apps: Callable[[], list[AppPolicy]]
    ) -> None:
        self.registry.register(_KeepWarmCollector(warm, apps))

    def watch_connections(self, guard: ConnectionGuard) -> None:
        self.registry.register(_ConnectionCollector(guard))


class HttpStats:
    """Request counts and latency histograms by (route, method, status), in plain numbers.

    The event loop is the only writer, so prometheus_client's per-value locks, which every
    request paid for a counter and a histogram (docs/PERFORMANCE.md), buy nothing; the
    figures are handed over at scrape time instead, under the same names and buckets."""

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


class _SharedCollector(Collector):
    """Sums the snapshots of every process. Counters and histograms of a process that
    has exited still count (a counter never goes down); its gauges do not."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for path in sorted(self._directory.glob("*.json")):
            try:
                snapshot = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # being replaced right now, or gone
            alive = _alive(int(path.stem.partition("-")[0]))
            for name, documentation, kind, samples in snapshot:
                if kind == "gauge" and not alive:
                    continue
                families.setdefault(name, Metric(name, documentation, kind))
                merged = values.setdefault(name, {})
                for sample_name, labels, value in samples:
                    key = (sample_name, tuple(sorted(labels.items())))
                    if name in _MINIMUM_GAUGES and key in merged:
                        merged[key] = min(merged[key], value)
                    elif name in _MAXIMUM_GAUGES and key in merged:
                        merged[key] = max(merged[key], value)
                    else:
                        merged[key] = merged.get(key, 0.0) + value
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():  # in exposition order
                family.add_sample(sample_name, dict(labels), value)
            yield family


_PROCESS_TOKEN = uuid.uuid4().hex[:12]  # a reused pid must not overwrite a dead one's counts
_MINIMUM_GAUGES = {"signer_cache_up"}  # up only if every process reaches the cache
# Every process counts the same shared set, and one paused process is a pause.
_MAXIMUM_GAUGES = {"signer_keepwarm_tracked", "signer_keepwarm_paused"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        shared = shared_store(cache)
        if shared is not None:  # the memory cache has no calls to fail, no writes to drop
            yield CounterMetricFamily(
                "signer_cache_errors",
                "Calls to the shared cache that failed or timed out (each one a miss or a "
                "held write for the request; the token was signed anyway).",
                shared.errors,
            )
            yield CounterMetricFamily(
                "signer_cache_dropped_writes",
                "Tokens signed but never stored in the shared cache: over the write "
                "queue's cap, expired while held, or failed again once Redis was back.",
                shared.dropped_writes,
            )
            yield GaugeMetricFamily(
                "signer_cache_held_writes",
                "Tokens signed while the shared cache could not take them, held to be "
                "stored when it can.",
                shared.held_writes,
            )
            yield from _round_trips(shared)


# Every kind of call, so that a series exists (at 0) before its first call: rate() and
# alerts then work from the start.
ROUND_TRIP_KINDS = ("read", "lease", "write", "delete", "revoke", "publish", "ping")


def _round_trips(shared: RedisCache) -> Iterator[CounterMetricFamily]:
    round_trips = CounterMetricFamily(
        "signer_cache_round_trips",
        "Calls sent to the shared cache by kind (read: an MGET of this loop iteration's "
        "lookups; lease: their signing leases; write: tokens stored and leases let go). "
        "Divided by signer_tokens_signed_total, the shared cache's cost per token.",
        labels=["kind"],
    )
    commands = CounterMetricFamily(
        "signer_cache_commands",
        "Commands those calls carried, by kind (one MGET of n lookups counts n).",
        labels=["kind"],
    )
    guard = shared.guard
    for kind in (*ROUND_TRIP_KINDS, *sorted(guard.round_trips.keys() - set(ROUND_TRIP_KINDS))):
        round_trips.add_metric([kind], guard.round_trips[kind])
        commands.add_metric([kind], guard.commands[kind])
    yield round_trips
    yield commands


def shared_store(cache: CacheBackend) -> RedisCache | None:
    """The Redis store behind ``cache`` (behind its in-process L1, if it has one), or
    None for the memory cache."""
    if isinstance(cache, LayeredCache):
        return cache.shared
    return cache if isinstance(cache, RedisCache) else None


class _KeepWarmCollector(Collector):
    """Keep-warm's figures, per app with keep-warm on: a series for each from the start."""

    def __init__(
        self, warm: Callable[[], KeepWarm | None], apps: Callable[[], list[AppPolicy]]
    ) -> None:
        self._warm = warm
        self._apps = apps

    def collect(self) -> Iterator[Metric]:
        warm = self._warm()
        if warm is None:
            return
        stats = warm.stats
        appids = sorted({policy.sdkappid for policy in self._apps()} | set(stats.resigned))
        tracked = GaugeMetricFamily(
            "signer_keepwarm_tracked",
            "Token variants keep-warm tracks in the shared cache (its last count, every ~10 s).",
            labels=["sdkappid"],
        )
        counters = {
            "resigned": "Tokens re-signed in the background before falling under min_remaining.",
            "late": "Re-signs made after the cached token had gone or fallen under "
            "min_remaining (a request meanwhile was a miss): the rate cap or the loop is "
            "behind, or Redis lost the token.",
            "fell_out": "Tracked variants dropped: their user idle past keep_warm_days, or "
            "logged out.",
            "skipped": "Claimed variants not re-signed: renewed meanwhile, or being signed "
            "elsewhere.",
            "failed": "Claimed variants whose re-sign failed (the engine full or closing, or "
            "a signing error): due again when their claim ends.",
        }
        families = {
            name: CounterMetricFamily(f"signer_keepwarm_{name}", text, labels=["sdkappid"])
            for name, text in counters.items()
        }
        for appid in appids:
            if appid in stats.tracked:
                tracked.add_metric([str(appid)], stats.tracked[appid])
            for name, family in families.items():
                family.add_metric([str(appid)], getattr(stats, name)[appid])
        yield tracked
        yield from families.values()
        yield GaugeMetricFamily(
            "signer_keepwarm_paused",
            "1 while keep-warm waits for the shared cache to answer again, else 0.",
            int(stats.paused),
        )


class _ConnectionCollector(Collector):
    """What the connection layer caught before requests reached a route."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard

    def collect(self) -> Iterator[Metric]:
        guard = self._guard
        yield GaugeMetricFamily(
            "signer_http_connections_open", "Client connections open now.", guard.open
        )
        yield CounterMetricFamily(
            "signer_http_connections_refused",
            "Connections answered 503 and closed: [server] max_connections were open.",
            guard.refused,
        )
        yield CounterMetricFamily(
            "signer_http_header_timeouts",
            "Connections answered 408 and closed: headers not in within header_timeout.",
            guard.header_timeouts,
        )
        yield CounterMetricFamily(
            "signer_http_malformed_requests",
            "Requests answered 400 because they are not valid HTTP/1.1.",
            guard.malformed,
        )
