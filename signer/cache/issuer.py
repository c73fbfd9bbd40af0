"""Cache-aside issuing: serve a cached token while it has enough life left, else sign.

A token is served from cache only if its entry names the same userid and sdkappid as the
request and it still has at least ``min_remaining`` seconds to live; the entry's TTL is set
so it leaves the cache at that point anyway. Concurrent misses for one key in this process
share one signature (a single-flight table of futures).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signer.cache.base import CacheBackend, CachedToken, CacheKey
from signer.core import IssuedToken, SignerError
from signer.engine import Engine, SignRequest


@dataclass(frozen=True, slots=True)
class Issued:
    """What a token endpoint returns."""

    usersig: str
    userid: str
    sdkappid: int
    issued_at: int
    expires_at: int
    key_version: str
    cached: bool

    @classmethod
    def from_cache(cls, entry: CachedToken) -> Issued:
        return cls(
            entry.usersig,
            entry.userid,
            entry.sdkappid,
            entry.issued_at,
            entry.expires_at,
            entry.key_version,
            True,
        )

    @classmethod
    def from_token(cls, token: IssuedToken) -> Issued:
        return cls(
            token.usersig,
            token.userid,
            token.sdkappid,
            token.issued_at,
            token.expires_at,
            token.key_version,
            False,
        )


@dataclass(frozen=True, slots=True)
class AppPolicy:
    """The caching facts of one app the issuer needs for a request."""

    sdkappid: int
    key_version: str
    min_remaining: int


class TokenIssuer:
    def __init__(
        self, engine: Engine, cache: CacheBackend, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.lookups: Counter[str] = Counter()
        self._clock = clock
        self._inflight: dict[CacheKey, asyncio.Future[IssuedToken]] = {}

    def _key(self, app: AppPolicy, userid: str, expire: int, userbuf: bytes | None) -> CacheKey:
        digest = hashlib.sha256(userbuf).hexdigest()[:32] if userbuf else ""
        return CacheKey(app.sdkappid, app.key_version, expire, digest, userid)

    def _usable(self, entry: CachedToken | None, key: CacheKey, app: AppPolicy) -> bool:
        if entry is None:
            self.lookups["miss"] += 1
            return False
        if entry.userid != key.userid or entry.sdkappid != key.sdkappid:
            self.lookups["mismatch"] += 1  # never serve another user's token
            return False
        if entry.expires_at - self._clock() < app.min_remaining:
            self.lookups["stale"] += 1
            return False
        self.lookups["hit"] += 1
        return True

    def _ttl(self, token: IssuedToken, app: AppPolicy) -> int:
        return int(token.expires_at - app.min_remaining - self._clock())

    async def issue(
        self, app: AppPolicy, userid: str, expire: int, userbuf: bytes | None = None
    ) -> Issued:
        """One token, from cache when possible. Raises the engine's SignerErrors."""
        key = self._key(app, userid, expire, userbuf)
        (entry,) = await self.cache.get_many([key])
        if self._usable(entry, key, app):
            assert entry is not None
            return Issued.from_cache(entry)
        while (shared := self._inflight.get(key)) is not None:
            try:
                return Issued.from_token(await asyncio.shield(shared))
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # we were cancelled ourselves
                # the leader went away before finishing: try again, perhaps as leader
        return Issued.from_token(await self._lead(app, key, userbuf))

    async def _lead(self, app: AppPolicy, key: CacheKey, userbuf: bytes | None) -> IssuedToken:
        """Sign for everyone waiting on ``key``; they share this one signature."""
        shared: asyncio.Future[IssuedToken] = asyncio.get_running_loop().create_future()
        self._inflight[key] = shared
        try:
            token = await self.engine.sign(
                SignRequest(app.sdkappid, key.userid, key.expire, userbuf)
            )
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved, even if nobody else was waiting
            raise
        finally:
            del self._inflight[key]
        shared.set_result(token)
        await self._store([(key, token)], app)
        return token

    async def issue_many(
        self, app: AppPolicy, userids: Sequence[str], expire: int
    ) -> list[Issued | SignerError]:
        """Tokens for many userids: one cache read, one engine call for the misses, one
        cache write. A userid that fails carries its error in place."""
        keys = [self._key(app, userid, expire, None) for userid in userids]
        entries = await self.cache.get_many(keys)
        results: list[Issued | SignerError | None] = [None] * len(keys)
        misses: list[int] = []
        for index, (key, entry) in enumerate(zip(keys, entries, strict=True)):
            if self._usable(entry, key, app):
                assert entry is not None
                results[index] = Issued.from_cache(entry)
            else:
                misses.append(index)
        if misses:
            requests = [SignRequest(app.sdkappid, userids[i], expire) for i in misses]
            outcomes = await self.engine.sign_many(requests)
            fresh = []
            for index, outcome in zip(misses, outcomes, strict=True):
                if isinstance(outcome, SignerError):
                    results[index] = outcome
                else:
                    results[index] = Issued.from_token(outcome)
                    fresh.append((keys[index], outcome))
            await self._store(fresh, app)
        return [r for r in results if r is not None]

    async def _store(self, tokens: Sequence[tuple[CacheKey, IssuedToken]], app: AppPolicy) -> None:
        items = []
        for key, token in tokens:
            ttl = self._ttl(token, app)
            if ttl > 0:
                entry = CachedToken(
                    token.usersig,
                    token.userid,
                    token.sdkappid,
                    token.issued_at,
                    token.expires_at,
                    token.key_version,
                )
                items.append((key, entry, ttl))
        if items:
            await self.cache.set_many(items)
