"""A small in-process cache (L1) in front of the shared one, for hot keys.

L1 entries live at most ``l1_ttl`` seconds, and an eviction (logout, ban) made on any
instance reaches every instance's L1 at once through Redis pub/sub. Freshness is still
checked by the issuer on every read, so L1 can never serve a token below min_remaining.

A key enters L1 the second time this instance meets it (read from Redis or signed) within
a window of about as many keys as L1 holds, not the first. In a login storm most userids
are asked for once: storing each one evicted another that was never read again, and in the
service that cost more than the Redis read it would have saved (docs/PERFORMANCE.md). A
key asked for twice is likely hot, and hot keys are what L1 is for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from signer.cache.backends.memory import MemoryCache
from signer.cache.backends.redis import RedisCache
from signer.cache.base import DEFAULT_MAX_LIFETIME, CachedToken, CacheKey, WarmMark


class LayeredCache:
    process_local = False

    def __init__(self, l1: MemoryCache, shared: RedisCache, l1_ttl: int = 5) -> None:
        self.l1 = l1
        self.shared = shared
        self.l1_ttl = l1_ttl
        self.name = f"{shared.name}+l1"
        self._listener: asyncio.Task[None] | None = None
        self._seen: set[CacheKey] = set()  # met once since the window began: not admitted
        self._window = max(1024, l1.max_entries)

    def _listen(self) -> None:
        if self._listener is None:
            self._listener = asyncio.ensure_future(self.shared.listen_evictions(self._evict_local))

    def _evict_local(self, sdkappid: int, userid: str) -> None:
        self.l1.drop_user(sdkappid, userid)

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]:
        self._listen()
        found = await self.l1.get_many(keys)
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            shared = await self.shared.get_many([keys[i] for i in missing])
            refill = []
            for index, entry in zip(missing, shared, strict=True):
                found[index] = entry
                if entry is not None and self._admit(keys[index]):
                    refill.append((keys[index], entry, self.l1_ttl))
            if refill:
                await self.l1.set_many(refill)
        return found

    def _admit(self, key: CacheKey) -> bool:
        """Whether ``key`` goes into L1 now: the second time it is met in the window."""
        seen = self._seen
        if key in seen:
            seen.discard(key)
            return True
        if len(seen) >= self._window:
            seen.clear()  # a new window: the keys of a storm do not pile up
        seen.add(key)
        return False

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        admitted = [(k, t, min(ttl, self.l1_ttl)) for k, t, ttl in items if self._admit(k)]
        if admitted:
            await self.l1.set_many(admitted)
        await self.shared.set_many(items, wait=wait)

    async def delete(self, keys: Sequence[CacheKey]) -> int:
        await self.l1.delete(keys)
        return await self.shared.delete(keys)

    def track(self, marks: Sequence[WarmMark]) -> None:
        self.shared.track(marks)

    @property
    def lost_marks(self) -> int:
        return self.shared.lost_marks

    async def delete_user(
        self,
        sdkappid: int,
        userid: str,
        known: Sequence[CacheKey] = (),
        *,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> int:
        """This instance's L1 first, in every case (it also refuses, for a while, tokens
        issued before now that a read or signing under way would put back); then the
        shared store, whose :class:`RevocationNotRecorded` reaches the caller; then, once
        the marker is in Redis, the broadcast that empties the other instances' L1s (if it
        is lost, their copies still leave within ``l1_ttl``)."""
        self.l1.drop_user(sdkappid, userid)
        deleted = await self.shared.delete_user(sdkappid, userid, known, max_lifetime=max_lifetime)
        await self.shared.publish_eviction(sdkappid, userid)
        return deleted

    async def acquire_lease(self, key: CacheKey, seconds: float) -> tuple[bool, CachedToken | None]:
        # A waiter on another instance's lease polls here: an entry it finds is met, as
        # one read by get_many is (the token of a key asked for twice belongs in L1).
        won, entry = await self.shared.acquire_lease(key, seconds)
        if entry is not None and self._admit(key):
            await self.l1.set_many([(key, entry, self.l1_ttl)])
        return won, entry

    async def read_or_lease(
        self, key: CacheKey, seconds: float
    ) -> tuple[CachedToken | None, bool | None]:
        self._listen()
        (entry,) = await self.l1.get_many([key])
        if entry is not None:
            return entry, None
        entry, won = await self.shared.read_or_lease(key, seconds)
        if entry is not None and self._admit(key):
            await self.l1.set_many([(key, entry, self.l1_ttl)])
        return entry, won

    async def release_lease(
        self, key: CacheKey, store: tuple[CachedToken, int] | None = None
    ) -> None:
        if store is not None and self._admit(key):
            token, ttl = store
            await self.l1.set_many([(key, token, min(ttl, self.l1_ttl))])
        await self.shared.release_lease(key, store)

    def healthy(self) -> bool:
        return self.shared.healthy()

    async def probe(self) -> bool:
        return await self.shared.probe()

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        self.shared.on_health_change(listener)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.l1.close()
        await self.shared.close()
