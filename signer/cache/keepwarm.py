"""Keep-warm: re-sign, in the background, the cached tokens of users who asked within an
app's ``keep_warm_days``, before they fall under ``min_remaining``, so that tomorrow's
login is a cache hit instead of a cold mint.

Every token stored for such an app records when its re-sign is due, a random point in
the last ``spread`` of its usable life (so a morning's logins are re-signed over hours,
not at once); every request records that its user asked. Both live in Redis, shared by
every instance (:mod:`~signer.cache.backends.warm`). Each instance runs one
:class:`KeepWarm` loop: every ``interval`` seconds (jittered) it claims the variants due,
as many as its own rate cap allows, and re-signs them under their stampede leases in the
engine's background queue (:func:`~signer.cache.warming.resign_due`). A claim holds a
variant for ``claim`` seconds, so two instances never both take it; a user idle past the
horizon, or logged out, falls out at their next due time instead.

With Redis down (the breaker open, or a claim failing) the loop pauses and says so once;
it resumes by itself when Redis answers again. Nothing it does can serve a token below
``min_remaining``: it only writes tokens, and every read still checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from signer.cache.backends.warm import WarmState
from signer.cache.issuer import AppPolicy, TokenIssuer
from signer.cache.warming import BACKDATE, resign_due

log = structlog.get_logger("signer.keepwarm")

MAX_CLAIM = 512  # variants per claim call: one script's work stays short
COUNT_EVERY = 10.0  # seconds between two ZCARDs of each app's due set (for metrics)


@dataclass(frozen=True)
class Pace:
    """The loop's settings (``[keep_warm]``), read again on every pass (SIGHUP)."""

    rate: float = 100.0
    claim: float = 60.0
    interval: float = 1.0


@dataclass
class KeepWarmStats:
    """Counters for ``/metrics`` and ``/readyz``, by sdkappid."""

    resigned: Counter[int] = field(default_factory=Counter)
    late: Counter[int] = field(default_factory=Counter)
    fell_out: Counter[int] = field(default_factory=Counter)
    skipped: Counter[int] = field(default_factory=Counter)
    failed: Counter[int] = field(default_factory=Counter)
    tracked: dict[int, int] = field(default_factory=dict)
    paused: bool = False
    pauses: int = 0
    last_pass: float | None = None
    """Wall-clock time of the last pass that reached Redis."""


class KeepWarm:
    """One instance's keep-warm loop. ``apps`` returns the policies of the apps with
    keep-warm on (it is asked on every pass, so a reload takes effect at once); ``pace``
    the loop's settings; ``healthy`` whether the shared store answers (its breaker)."""

    def __init__(
        self,
        issuer: Callable[[], TokenIssuer],
        state: WarmState,
        apps: Callable[[], Sequence[AppPolicy]],
        pace: Callable[[], Pace],
        healthy: Callable[[], bool],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._issuer = issuer
        self._state = state
        self._apps = apps
        self._pace = pace
        self._healthy = healthy
        self._rng = rng
        self.stats = KeepWarmStats()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Pass after pass until cancelled, each claiming at most what the rate cap has
        earned since the last (a token bucket holding at most two intervals' worth)."""
        loop = asyncio.get_running_loop()
        allowance, last, counted = 0.0, loop.time(), -COUNT_EVERY
        while True:
            pace = self._pace()
            now = loop.time()
            allowance = min(
                allowance + pace.rate * (now - last), max(1.0, 2 * pace.rate * pace.interval)
            )
            last = now
            try:
                if self._apps():
                    spent = await self.tick(int(allowance), count=now - counted >= COUNT_EVERY)
                    allowance -= spent
                    if now - counted >= COUNT_EVERY:
                        counted = now
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must outlive any one pass
                log.error("keep-warm pass failed", error=repr(error))
            await asyncio.sleep(pace.interval * (0.8 + 0.4 * self._rng()))

    async def tick(self, limit: int = MAX_CLAIM, count: bool = False) -> int:
        """One pass: claim and re-sign up to ``limit`` due variants over the apps (and,
        with ``count``, refresh the tracked counts). Returns how many were claimed."""
        if not self._healthy():
            self._pause("the shared cache is unreachable")
            return 0
        issuer = self._issuer()
        pace = self._pace()
        claimed = 0
        for app in self._apps():
            if count:
                tracked = await self._state.count(app.sdkappid)
                if tracked is not None:
                    self.stats.tracked[app.sdkappid] = tracked
            room = min(MAX_CLAIM, limit - claimed)
            if room <= 0:
                continue
            now = issuer.clock()
            got = await self._state.claim(
                app.sdkappid,
                int(now * 1000),
                int((now - app.keep_warm) * 1000),
                int((now + pace.claim) * 1000),
                room,
                skew_ms=BACKDATE * 1000,
            )
            if got is None:
                self._pause("a claim failed")
                return claimed
            self._resume()
            self.stats.fell_out[app.sdkappid] += got.fell_out
            if not got.due:
                continue
            claimed += len(got.due)
            counts = await resign_due(
                issuer, app, [(due.userid, due.expire) for due in got.due], now
            )
            for name in ("resigned", "late", "skipped", "failed"):
                getattr(self.stats, name)[app.sdkappid] += counts[name]
        self.stats.last_pass = time.time()
        return claimed

    def _pause(self, reason: str) -> None:
        if not self.stats.paused:
            self.stats.paused = True
            self.stats.pauses += 1
            log.warning("keep-warm paused until the cache answers again", reason=reason)

    def _resume(self) -> None:
        if self.stats.paused:
            self.stats.paused = False
            log.info("keep-warm resumed")
