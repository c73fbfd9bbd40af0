"""What the running service holds, and how it changes on a reload (SIGHUP)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.cache import AppPolicy, CacheBackend, TokenIssuer
from signer.cache.keepwarm import KeepWarm, Pace
from signer.config import AppRuntime, Runtime, Settings, build_runtime, engine_settings
from signer.engine import Engine
from signer.service.auth import RateLimiter
from signer.service.errors import UnknownSdkAppId
from signer.service.metrics import ServiceMetrics, shared_store


@dataclass
class ServiceState:
    runtime: Runtime
    engine: Engine
    issuer: TokenIssuer
    cache: CacheBackend
    limiter: RateLimiter
    metrics: ServiceMetrics
    started_at: float = 0.0
    keep_warm: KeepWarm | None = None
    """This process's keep-warm loop: None without a shared cache (settings then refuse
    keep_warm_days); it idles while no app has keep-warm on."""
    _policies: dict[int, AppPolicy] = field(default_factory=dict)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(
        cls, runtime: Runtime, cache: CacheBackend, shared_metrics: Path | None = None
    ) -> ServiceState:
        engine = Engine(runtime.keyset, engine_settings(runtime.settings))
        limits = runtime.settings.rate_limit
        state = cls(
            runtime=runtime,
            engine=engine,
            issuer=TokenIssuer(engine, cache),
            cache=cache,
            limiter=RateLimiter(limits.rate, limits.burst),
            metrics=ServiceMetrics(shared_metrics),
            started_at=time.time(),
        )
        shared = shared_store(cache)
        if shared is not None:
            state.keep_warm = KeepWarm(
                lambda: state.issuer,
                shared.warm,
                state.warm_policies,
                state.warm_pace,
                cache.healthy,
            )
        state.metrics.watch(lambda: state.engine, lambda: state.issuer)
        state.metrics.watch_keep_warm(lambda: state.keep_warm, state.warm_policies)
        return state

    def warm_policies(self) -> list[AppPolicy]:
        """The policies of the apps with keep-warm on (asked again on every pass)."""
        apps = self.runtime.apps.values()
        return [self.policy(app) for app in apps if app.settings.keep_warm_days]

    def warm_pace(self) -> Pace:
        settings = self.runtime.settings.keep_warm
        return Pace(settings.rate, settings.claim, settings.interval)

    def keep_warm_details(self) -> dict[str, Any]:
        """Keep-warm's state for /readyz: per app its days and tracked variants (as of
        the loop's last count), whether it is paused, its totals."""
        policies = self.warm_policies()
        warm = self.keep_warm
        if warm is None or not policies:
            return {"enabled": False}
        stats = warm.stats
        return {
            "enabled": True,
            "paused": stats.paused,
            "rate": self.runtime.settings.keep_warm.rate,
            "apps": {
                str(policy.sdkappid): {
                    "days": policy.keep_warm // 86400,
                    "tracked": stats.tracked.get(policy.sdkappid),
                }
                for policy in policies
            },
            "resigned": sum(stats.resigned.values()),
            "late": sum(stats.late.values()),
            "failed": sum(stats.failed.values()),
            "last_pass": stats.last_pass,
        }

    def app(self, sdkappid: int) -> AppRuntime:
        app = self.runtime.apps.get(sdkappid)
        if app is None:
            raise UnknownSdkAppId(sdkappid)
        return app

    def policy(self, app: AppRuntime) -> AppPolicy:
        """The caching facts of ``app``, built once per runtime (every request needs them)."""
        policy = self._policies.get(app.sdkappid)
        if policy is None or policy.key_version != app.cache_version:
            policy = self._policies[app.sdkappid] = self._build_policy(app)
        return policy

    def _build_policy(self, app: AppRuntime) -> AppPolicy:
        return app_policy(self.runtime.settings, app)

    async def reload(self, settings: Settings) -> Runtime:
        """Switch to ``settings``: keys load first, so a bad config changes nothing.

        Apps, keys, callers, auth, rate limits, batch limits and the cache's lifetimes
        take effect at once; :func:`restart_only_changes` names what does not."""
        async with self._reloading:  # two SIGHUPs in a row: the second waits its turn
            runtime = build_runtime(settings)
            await self.engine.reload(runtime.keyset)
            self._switch(runtime)
        return runtime

    def _switch(self, runtime: Runtime) -> None:
        settings = runtime.settings
        previous, self.runtime = self.runtime.settings, runtime
        self._policies = {}
        limits = settings.rate_limit
        if (limits.rate, limits.burst) != (previous.rate_limit.rate, previous.rate_limit.burst):
            self.limiter = RateLimiter(limits.rate, limits.burst)  # else callers keep buckets


def app_policy(settings: Settings, app: AppRuntime) -> AppPolicy:
    """The caching facts of ``app`` under ``settings`` (the service's, ``signer warm``'s)."""
    cache = settings.cache
    return AppPolicy(
        app.sdkappid,
        app.cache_version,
        cache.min_remaining,
        cache.refresh_ahead,
        cache.refresh_jitter,
        cache.lease,
        cache.lease_wait,
        app.settings.keep_warm_days * 86400,
        settings.keep_warm.spread,
    )


# What a running process cannot change: its socket, logging, worker pool and cache client.
RESTART_ONLY = {
    "server": (
        "host",
        "port",
        "max_body_bytes",
        "shutdown_timeout",
        "keepalive_timeout",
        "backlog",
        "log_format",
        "log_level",
        "processes",
    ),
    "engine": None,  # every field
    "cache": (
        "url",
        "max_entries",
        "timeout",
        "breaker_failures",
        "breaker_reset",
        "key_prefix",
        "l1_entries",
        "l1_ttl",
    ),
}


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """Settings that differ between ``old`` and ``new`` but apply only after a restart."""
    changed = []
    for section, fields in RESTART_ONLY.items():
        before, after = getattr(old, section), getattr(new, section)
        for name in fields or type(before).model_fields:
            if getattr(before, name) != getattr(after, name):
                changed.append(f"{section}.{name}")
    return changed
