"""Steady, bounded load for the fault suite: ``rate`` token requests a second (open loop,
at most ``in_flight`` outstanding), every answer checked, each request recorded with its
time, latency and outcome.

It runs on an event loop of its own in a thread, so that the fault being injected (blocking
calls: kill, wait, restart) runs beside it in the caller's thread. Tokens are checked as
loadtest checks them (userid, sdkappid, decodable, at least ``min_remaining`` left), and
every one is fully verified: v1 tokens against the public key of the ``key_version`` their
answer names (so a key rotation is checked too), v2 against the secret.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from deploy.local.config import V1_APP, V2_APP
from loadtest.checks import HTTP_STATUS, MALFORMED, Problem, TokenChecker
from signer.core import EcPublicKey, HmacSecret, VerificationError, load_public_key, verify

TIMEOUT = 10.0  # seconds a request may take before it counts as failed


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic start time
    latency: float  # seconds
    failure: str  # "" when good, else the kind of failure
    cached: bool = False  # a good answer that came from the cache (``"cached": true``)


@dataclass
class Load:
    """``rate`` POST /v1/usersig a second to ``url`` from a pool of ``users`` userids."""

    url: str
    api_key: str
    v1_keys: dict[str, Path]  # key_version -> public key file
    v2_secret: Path
    rate: float = 200.0
    in_flight: int = 64
    users: int = 2000
    v1_share: float = 0.8  # the rest asks for the v2 app
    fresh_connections: bool = False  # a new TCP connection per request (no keep-alive)
    prefix: str = "user-"
    seed: int = 14
    samples: list[Sample] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # requests not sent because ``in_flight`` were outstanding
    details: list[str] = field(default_factory=list)  # the first few failures, for people
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._keys = {v: load_public_key(p.read_bytes()) for v, p in self.v1_keys.items()}
        self._secret = HmacSecret.from_text(self.v2_secret.read_bytes())
        self._checker = TokenChecker(keys={}, verify_rate=0.0)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT + 5)

    def refresh_keys(self, v1_keys: dict[str, Path]) -> None:
        """Add key versions (after a rotation) that answers may name."""
        self._keys = {v: load_public_key(p.read_bytes()) for v, p in v1_keys.items()}

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.in_flight, force_close=self.fresh_connections)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        rng = random.Random(self.seed)  # noqa: S311 (userids, not secrets)
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as session:
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                    continue
                next_at += interval
                if len(pending) >= self.in_flight:
                    self.skipped += 1
                    continue
                sdkappid = V1_APP if rng.random() < self.v1_share else V2_APP
                userid = f"{self.prefix}{rng.randrange(self.users)}"
                task = asyncio.ensure_future(self._one(session, sdkappid, userid))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending)

    async def _one(self, session: aiohttp.ClientSession, sdkappid: int, userid: str) -> None:
        began = time.monotonic()
        failure, cached = "", False
        try:
            async with session.post(
                f"{self.url}/v1/usersig", json={"sdkappid": sdkappid, "userid": userid}
            ) as answer:
                text = await answer.text()
                try:
                    body = json.loads(text)
                except ValueError:
                    body = text[:80]  # nginx's own HTML error page, say
                if answer.status != 200:
                    problem: Problem | None = Problem(HTTP_STATUS, f"{answer.status} {body}")
                else:
                    problem = self._check(body, sdkappid, userid)
                    cached = isinstance(body, dict) and body.get("cached") is True
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = Problem("connection", f"{type(exc).__name__}: {exc}")
        if problem is not None:
            failure = problem.kind
            self.failures[failure] += 1
            if len(self.details) < 10:
                self.details.append(f"{time.monotonic():.1f} {problem}")
        self.samples.append(
            Sample(began, time.monotonic() - began, failure, cached and not failure)
        )

    def _check(self, body: object, sdkappid: int, userid: str) -> Problem | None:
        problem = self._checker.check(body, userid=userid, sdkappid=sdkappid)
        if problem is not None:
            return problem
        assert isinstance(body, dict)
        key: EcPublicKey | HmacSecret = self._secret
        if sdkappid == V1_APP:
            public = self._keys.get(str(body.get("key_version")))
            if public is None:
                return Problem(MALFORMED, f"key_version {body.get('key_version')!r} unknown")
            key = public
        try:
            verify(body["usersig"], userid=userid, sdkappid=sdkappid, key=key)
        except VerificationError as exc:
            return Problem("bad_token", f"code {exc.code}: {exc}")
        return None


def p99(samples: list[Sample]) -> float | None:
    """The 99th percentile latency in ms (None without samples)."""
    if not samples:
        return None
    latencies = sorted(s.latency for s in samples)
    return 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def recovery(samples: list[Sample], since: float, baseline_ms: float, window: float = 1.0) -> float:
    """Seconds from ``since`` to the end of the last ``window`` whose requests (by start
    time) had a failure or a p99 above twice the baseline (at least +20 ms): 0 if none did."""
    threshold = max(2 * baseline_ms, baseline_ms + 20)
    last_bad = since
    end = max((s.at for s in samples), default=since)
    t = since
    while t < end:
        chunk = [s for s in samples if t <= s.at < t + window]
        worst = p99(chunk)
        if any(s.failure for s in chunk) or (worst is not None and worst > threshold):
            last_bad = t + window
        t += window
    return max(0.0, last_bad - since)
