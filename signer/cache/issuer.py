"""Cache-aside issuing with refresh-ahead and one signature per key under a stampede.

A cached token is served only if its entry names the same userid and sdkappid as the
request and it has at least ``min_remaining`` seconds left; the entry's TTL ends it then
anyway. Past ``refresh_ahead`` seconds of remaining life the cached token is still served
but a new one is signed in the background, each lookup drawing its own threshold within
``refresh_jitter`` of it so a fleet of instances does not refresh one key at once.

A miss is signed once per key: concurrent misses in this process share one signing (a
single-flight table), and across instances a short lease in the shared store lets one
instance sign while the others wait a bounded time for its result (one of them takes the
lease over if the holder lets go without a token or vanishes), then sign themselves.

For an app with keep-warm (``AppPolicy.keep_warm``), every token stored also records when
it is due for a background re-sign, and every request records that its user asked
(:meth:`TokenIssuer.marks`; the re-signing itself is :mod:`signer.cache.warming`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from signer.cache.base import CacheBackend, CachedToken, CacheKey, WarmMark
from signer.core import IssuedToken, SignerError
from signer.engine import Engine, SignRequest

LEASE_POLL_SECONDS = 0.01  # the first pause of a waiter on another instance's lease
LEASE_POLL_MAX_SECONDS = 0.05  # its pauses double up to this
SEEN_EVERY = 3600.0
"""Seconds between two records that a user asked, per process: a user's keep-warm horizon
is days, so one write an hour is plenty, and a warm storm of hits costs Redis one mark
per user, not one per request. Only hits are spared: a token stored for a user who asked
(a miss) always records it, because a miss is what follows whatever lost the last record
(a logout, a Redis that came back empty); and once the cache reports a mark lost (an
outage, a failed write), the process forgets every record it made, so the next hits
record their users again."""
SEEN_MAX_USERS = 200_000  # the per-process memory of marks made; cleared when it is full


class Issued(NamedTuple):
    """What a token endpoint returns: a cache entry's fields, then whether it was cached."""

    usersig: str
    userid: str
    sdkappid: int
    issued_at: int
    expires_at: int
    key_version: str
    cached: bool

    @classmethod
    def from_cache(cls, entry: CachedToken) -> Issued:
        return cls(*entry, True)

    @classmethod
    def from_token(cls, token: IssuedToken) -> Issued:
        return cls(*CachedToken.of(token), False)


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """The caching facts of one app the issuer needs for a request (times in seconds)."""

    sdkappid: int
    key_version: str
    min_remaining: int
    refresh_ahead: int = 0
    refresh_jitter: float = 0.2
    lease_seconds: float = 2.0
    lease_wait: float = 2.0
    keep_warm: int = 0
    """Seconds a user who asked stays kept warm (``keep_warm_days``); 0: off."""
    warm_spread: float = 0.25
    """The share of a token's usable life before its end in which its re-sign is due."""

    def warm_lead(self, expire: int) -> float:
        """Seconds before a token of lifetime ``expire`` stops being served (at
        ``min_remaining`` left) that its re-sign window opens."""
        return self.warm_spread * max(0, expire - self.min_remaining)


class TokenIssuer:
    def __init__(
        self,
        engine: Engine,
        cache: CacheBackend,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.lookups: Counter[str] = Counter()
        self.refreshes = 0
        self._clock = clock
        self._rng = rng
        self._inflight: dict[CacheKey, asyncio.Future[Issued]] = {}
        self._background: set[asyncio.Task[Issued]] = set()
        self._seen: dict[tuple[int, str], float] = {}  # user -> when last marked as asking
        self._lost_marks = 0  # the cache's lost_marks when _seen was last trusted

    def key(self, app: AppPolicy, userid: str, expire: int, userbuf: bytes | None) -> CacheKey:
        """The cache key of a token of ``userid`` with ``expire`` (and ``userbuf``)."""
        return self._key(app, userid, expire, userbuf)

    def signing(self, key: CacheKey) -> bool:
        """Whether this process is signing ``key`` right now (for a request or a refresh)."""
        return key in self._inflight

    def verdict(self, entry: CachedToken | None, key: CacheKey, app: AppPolicy) -> str:
        """``hit``, ``miss``, ``mismatch`` or ``stale`` for ``entry`` read under ``key``,
        not counted as a lookup."""
        return self._verdict(entry, key, app)

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def marks(
        self,
        app: AppPolicy,
        key: CacheKey,
        entry: CachedToken,
        *,
        stored: bool,
        asked: bool,
    ) -> list[WarmMark]:
        """Keep-warm's record of ``entry`` under ``key``: its re-sign's due time (if it was
        ``stored`` now; else only where none is recorded), and, if its user ``asked``, that
        they did (for a hit, at most once per SEEN_EVERY per process). Nothing for an app without
        keep-warm or a token with a userbuf (which the service cannot re-sign alone)."""
        if not app.keep_warm or key.userbuf_digest:
            return []
        now = self._clock()
        seen_ms = None
        if asked:
            if self.cache.lost_marks != self._lost_marks:  # some never reached the store
                self._lost_marks = self.cache.lost_marks
                self._seen.clear()
            user = (key.sdkappid, key.userid)
            last = self._seen.get(user)
            if stored or last is None or now - last >= min(SEEN_EVERY, app.keep_warm / 24):
                if len(self._seen) >= SEEN_MAX_USERS:
                    self._seen.clear()
                self._seen[user] = now
                seen_ms = int(now * 1000)
            elif not stored:
                return []  # a hit of a user marked recently: its due time is recorded too
        lead = app.warm_lead(key.expire)
        deadline = entry.expires_at - app.min_remaining
        due = deadline - lead * (0.1 + 0.9 * self._rng())  # spread over the window, jittered
        return [
            WarmMark(
                key.sdkappid,
                key.userid,
                key.expire,
                int(due * 1000),
                seen_ms,
                app.keep_warm * 1000,
                due_if_untracked=not stored,
            )
        ]

    def _key(self, app: AppPolicy, userid: str, expire: int, userbuf: bytes | None) -> CacheKey:
        digest = "" if userbuf is None else "b" + hashlib.sha256(userbuf).hexdigest()[:32]
        return CacheKey(app.sdkappid, app.key_version, expire, digest, userid)

    def _usable(self, entry: CachedToken | None, key: CacheKey, app: AppPolicy) -> bool:
        """Whether ``entry`` may be served for ``key``; counts the request's lookup."""
        verdict = self._verdict(entry, key, app)
        self.lookups[verdict] += 1
        return verdict == "hit"

    def _verdict(self, entry: CachedToken | None, key: CacheKey, app: AppPolicy) -> str:
        if entry is None:
            return "miss"
        if entry.userid != key.userid or entry.sdkappid != key.sdkappid:
            return "mismatch"  # never serve another user's token
        if entry.expires_at - self._clock() < app.min_remaining:
            return "stale"
        return "hit"

    def _due_for_refresh(self, entry: CachedToken, app: AppPolicy) -> bool:
        threshold = app.refresh_ahead * (1 - app.refresh_jitter * self._rng())
        return entry.expires_at - self._clock() < threshold

    async def issue(
        self, app: AppPolicy, userid: str, expire: int, userbuf: bytes | None = None
    ) -> Issued:
        """One token, from cache when possible. Raises the engine's SignerErrors."""
        key = self._key(app, userid, expire, userbuf)
        # A miss is signed next: a shared store takes its lease in the read's round trip.
        entry, leased = await self.cache.read_or_lease(key, app.lease_seconds)
        if self._usable(entry, key, app):
            assert entry is not None
            if app.keep_warm:
                self.cache.track(self.marks(app, key, entry, stored=False, asked=True))
            if self._due_for_refresh(entry, app) and key not in self._inflight:
                self.refreshes += 1
                task = asyncio.ensure_future(self._lead(app, key, userbuf, replacing=entry))
                self._background.add(task)
                task.add_done_callback(self._background_done)
            return Issued.from_cache(entry)
        while (shared := self._inflight.get(key)) is not None:
            if leased:  # the leader here signs for us: the lease we took is not needed
                leased = None
                await self.cache.release_lease(key)
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # we were cancelled ourselves
                # the leader went away before finishing: try again, perhaps as leader
        return await self._lead(app, key, userbuf, leased=leased)

    def _background_done(self, task: asyncio.Task[Issued]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a failed refresh is retried by the next lookup

    async def _lead(
        self,
        app: AppPolicy,
        key: CacheKey,
        userbuf: bytes | None,
        replacing: CachedToken | None = None,
        leased: bool | None = None,
    ) -> Issued:
        """Get the token for everyone in this process waiting on ``key`` (a refresh passes
        the entry it ``replacing``, which does not count as the result; ``leased`` is what
        the read said of the lease, None if it was not tried)."""
        shared: asyncio.Future[Issued] = asyncio.get_running_loop().create_future()
        self._inflight[key] = shared
        try:
            issued = await self._obtain(app, key, userbuf, replacing, leased)
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved, even if nobody else was waiting
            raise
        finally:
            del self._inflight[key]
        shared.set_result(issued)
        return issued

    async def _obtain(
        self,
        app: AppPolicy,
        key: CacheKey,
        userbuf: bytes | None,
        replacing: CachedToken | None,
        leased: bool | None = None,
    ) -> Issued:
        """Sign under the store's lease, or wait (bounded) for the instance that holds it.
        ``leased`` True or False: the read tried the lease already (and found no entry)."""
        if self.cache.process_local:  # nobody else signs for this store: no lease needed
            return await self._sign(app, key, userbuf)

        def result(entry: CachedToken | None) -> bool:
            fresh = replacing is None or (entry is not None and entry.usersig != replacing.usersig)
            # A re-read while signing is not a lookup of its own: it is not counted.
            return entry is not None and fresh and self._verdict(entry, key, app) == "hit"

        if leased is None:
            won, entry = await self.cache.acquire_lease(key, app.lease_seconds)
        else:
            won, entry = leased, None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + app.lease_wait  # real time, whatever clock tokens use
        pause = LEASE_POLL_SECONDS
        while not won:
            if result(entry):
                assert entry is not None
                return Issued.from_cache(entry)
            if loop.time() >= deadline:
                return await self._sign(app, key, userbuf)  # the holder is slow past our wait
            await asyncio.sleep(pause)
            pause = min(pause * 2, LEASE_POLL_MAX_SECONDS)
            # Polled with the lease itself, not a plain read: a holder that lets go without
            # a token (its signing failed) or whose lease ran out (it is gone) hands the
            # signing to exactly one waiter, instead of every waiter signing at its deadline.
            won, entry = await self.cache.acquire_lease(key, app.lease_seconds)
        token: IssuedToken | None = None
        try:
            # Double-check: the previous holder may have stored the token and let go
            # between our miss and our lease (the entry came back with the lease).
            if result(entry):
                assert entry is not None
                return Issued.from_cache(entry)
            token = await self.engine.sign(
                SignRequest(app.sdkappid, key.userid, key.expire, userbuf)
            )
            return Issued.from_token(token)
        finally:
            # Stored and let go in one step, not awaited: the answer is in our hands,
            # and the instances waiting on the lease read exactly that write.
            stored = None if token is None else self._entry(key, token, app)
            await self.cache.release_lease(key, None if stored is None else stored[1:])
            if stored is not None and app.keep_warm:
                self.cache.track(self.marks(app, key, stored[1], stored=True, asked=True))

    async def _sign(self, app: AppPolicy, key: CacheKey, userbuf: bytes | None) -> Issued:
        token = await self.engine.sign(SignRequest(app.sdkappid, key.userid, key.expire, userbuf))
        await self._store([(key, token)], app)
        return Issued.from_token(token)

    async def issue_many(
        self, app: AppPolicy, userids: Sequence[str], expire: int
    ) -> list[Issued | SignerError]:
        """Tokens for many userids: one cache read, one engine call for the misses, one
        cache write. A userid that fails carries its error in place."""
        keys = [self._key(app, userid, expire, None) for userid in userids]
        entries = await self.cache.get_many(keys)
        results: list[Issued | SignerError | None] = [None] * len(keys)
        misses: list[int] = []
        marks: list[WarmMark] = []
        for index, (key, entry) in enumerate(zip(keys, entries, strict=True)):
            if self._usable(entry, key, app):
                assert entry is not None
                results[index] = Issued.from_cache(entry)
                if app.keep_warm:
                    marks += self.marks(app, key, entry, stored=False, asked=True)
            else:
                misses.append(index)
        if misses:
            first: dict[str, int] = {}  # a userid repeated in one batch is signed once
            unique = [first.setdefault(userids[i], i) for i in misses]
            todo = sorted(set(unique))
            requests = [SignRequest(app.sdkappid, userids[i], expire) for i in todo]
            outcomes = dict(zip(todo, await self.engine.sign_many(requests), strict=True))
            fresh = []
            for index, source in zip(misses, unique, strict=True):
                outcome = outcomes[source]
                if isinstance(outcome, SignerError):
                    results[index] = outcome
                else:
                    results[index] = Issued.from_token(outcome)
                    if index == source:
                        fresh.append((keys[index], outcome))
            await self._store(fresh, app)
        if marks:
            self.cache.track(marks)
        return [r for r in results if r is not None]

    def _entry(
        self, key: CacheKey, token: IssuedToken, app: AppPolicy
    ) -> tuple[CacheKey, CachedToken, int] | None:
        """What to store for ``token``: its entry and TTL, or None if it would be stale at
        once. The entry leaves the store when its token has min_remaining seconds left."""
        ttl = int(token.issued_at + token.expire - app.min_remaining - self._clock())
        return (key, CachedToken.of(token), ttl) if ttl > 0 else None

    def entry(
        self, key: CacheKey, token: IssuedToken, app: AppPolicy
    ) -> tuple[CacheKey, CachedToken, int] | None:
        """What to store for ``token`` (:meth:`_entry`)."""
        return self._entry(key, token, app)

    async def _store(
        self,
        tokens: Sequence[tuple[CacheKey, IssuedToken]],
        app: AppPolicy,
        asked: bool = True,
    ) -> None:
        """Store ``tokens`` with their keep-warm marks (``asked``: their users asked for
        them, rather than keep-warm re-signing them)."""
        items = [item for key, token in tokens if (item := self._entry(key, token, app))]
        if items:
            await self.cache.set_many(items)
            if app.keep_warm:
                self.cache.track(
                    [
                        m
                        for k, e, _ in items
                        for m in self.marks(app, k, e, stored=True, asked=asked)
                    ]
                )
