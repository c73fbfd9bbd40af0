"""The in-process cache: bounded, LRU, with per-entry expiry. Dev mode and single instances.

Keys and entries are stored as plain tuples of strings and ints: CPython stops tracking
such tuples in its cycle collector, so however many tokens are cached, they add nothing to
the cost of a full garbage collection (which otherwise showed up as stalls in the p99; see
docs/PERFORMANCE.md).

A logout or ban (``drop_user``) finds the user's entries through a per-user index, kept in
step with every insertion, overwrite, LRU eviction, expiry and deletion: it costs the
variants of one user, where a scan walked every cached entry and held the event loop
meanwhile (docs/PERFORMANCE.md). The index maps a userid to its one key (the usual case: no
per-user container, which the cycle collector would track) or to a set of its keys.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from signer.cache.base import DEFAULT_MAX_LIFETIME, CachedToken, CacheKey, WarmMark

_Entry = tuple[float, str, str, int, int, int, str]  # deadline, then CachedToken's fields
_Key = tuple[object, ...]  # a CacheKey as a plain tuple: sdkappid, version, expire, digest, userid

REVOCATION_WINDOW = 60.0
"""Seconds a logout is remembered to refuse tokens issued before it: a signing already under
way, or a read of the shared store that crossed the logout, may still hand one over."""


class MemoryCache:
    """At most ``max_entries`` tokens; the least recently used leave first."""

    name = "memory"
    process_local = True

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[_Key, _Entry] = OrderedDict()
        self._users: dict[object, _Key | set[_Key]] = {}  # userid -> its key(s), every app
        self._revoked: OrderedDict[tuple[int, str], int] = OrderedDict()  # -> when, in ms

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]:
        now = self._clock()
        found: list[CachedToken | None] = []
        for key in keys:
            plain = tuple(key)
            item = self._data.get(plain)
            if item is None or item[0] <= now:
                if item is not None:
                    del self._data[plain]
                    self._unindex(plain)
                found.append(None)
                continue
            self._data.move_to_end(plain)
            found.append(CachedToken(*item[1:]))
        return found

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        if self.max_entries == 0:
            return
        deadline_base = self._clock()
        data, users, revoked = self._data, self._users, self._revoked
        if revoked:
            self._forget_revocations(deadline_base)
        for key, token, ttl in items:
            plain = tuple(key)
            if revoked and token.issued_at * 1000 <= revoked.get((key[0], key[4]), -1):
                continue  # issued before the user's logout: never cached again
            size = len(data)
            data[plain] = (deadline_base + ttl, *token)
            if len(data) == size:  # an overwrite: the key is indexed already
                data.move_to_end(plain)
                continue
            slot = users.setdefault(key[4], plain)  # one lookup for the usual new user
            if slot is not plain:
                if type(slot) is set:
                    slot.add(plain)
                else:
                    users[key[4]] = {slot, plain}  # type: ignore[arg-type]
        while len(data) > self.max_entries:
            oldest = data.popitem(last=False)[0]
            slot = users.pop(oldest[4], oldest)  # one lookup for the usual user of one key
            if slot is not oldest:
                users[oldest[4]] = slot
                self._unindex(oldest)

    def _unindex(self, plain: _Key) -> None:
        """Forget ``plain`` in the per-user index (its entry has just left ``_data``)."""
        users = self._users
        userid = plain[4]
        slot = users.get(userid)
        if isinstance(slot, set):
            slot.discard(plain)
            if len(slot) == 1:
                users[userid] = next(iter(slot))
            elif not slot:
                del users[userid]
        elif slot is not None and slot == plain:
            del users[userid]

    async def acquire_lease(self, key: CacheKey, seconds: float) -> tuple[bool, CachedToken | None]:
        # One process: its single-flight table already gives one signature.
        return True, (await self.get_many([key]))[0]

    async def read_or_lease(
        self, key: CacheKey, seconds: float
    ) -> tuple[CachedToken | None, bool | None]:
        # One process: no lease to take (the issuer's single-flight is all there is).
        return (await self.get_many([key]))[0], None

    async def release_lease(
        self, key: CacheKey, store: tuple[CachedToken, int] | None = None
    ) -> None:
        if store is not None:
            await self.set_many([(key, *store)])

    async def delete(self, keys: Sequence[CacheKey]) -> int:
        deleted = 0
        for key in keys:
            plain = tuple(key)
            if self._data.pop(plain, None) is not None:
                self._unindex(plain)
                deleted += 1
        return deleted

    def track(self, marks: Sequence[WarmMark]) -> None:
        return None  # keep-warm needs a shared store ([cache] url): settings refuse it here

    lost_marks = 0  # (none tracked)

    async def delete_user(
        self,
        sdkappid: int,
        userid: str,
        known: Sequence[CacheKey] = (),
        *,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> int:
        """Drop every entry of one user (logout, ban), whatever its version or lifetime.
        One process holds the only copy, so this is durable as soon as it returns."""
        return self.drop_user(sdkappid, userid)

    def drop_user(self, sdkappid: int, userid: str) -> int:
        """Drop the user's entries of app ``sdkappid``, and refuse for a while to store
        tokens of theirs issued before now (see REVOCATION_WINDOW)."""
        self._remember_revocation(sdkappid, userid)
        slot = self._users.get(userid)
        if slot is None:
            return 0
        keys = slot if isinstance(slot, set) else (slot,)
        doomed = [key for key in keys if key[0] == sdkappid]
        if not doomed:
            return 0
        for key in doomed:
            del self._data[key]
        kept = [key for key in keys if key[0] != sdkappid]
        if not kept:
            del self._users[userid]
        elif len(kept) == 1:
            self._users[userid] = kept[0]
        else:
            self._users[userid] = set(kept)
        return len(doomed)

    def user_keys(self, sdkappid: int, userid: str) -> set[_Key]:
        """The keys cached for one user of one app, from the index."""
        slot = self._users.get(userid)
        keys = () if slot is None else slot if isinstance(slot, set) else (slot,)
        return {key for key in keys if key[0] == sdkappid}

    def _remember_revocation(self, sdkappid: int, userid: str) -> None:
        now = self._clock()
        user = (sdkappid, userid)
        self._revoked.pop(user, None)
        self._revoked[user] = int(now * 1000)  # the newest last: the oldest leave first
        self._forget_revocations(now)

    def _forget_revocations(self, now: float) -> None:
        revoked = self._revoked
        horizon = (now - REVOCATION_WINDOW) * 1000
        while revoked and next(iter(revoked.values())) < horizon:
            revoked.popitem(last=False)

    def healthy(self) -> bool:
        return True

    async def probe(self) -> bool:
        return True  # nothing to reach

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        return None  # never down, so never a change to report

    def __len__(self) -> int:
        return len(self._data)

    async def close(self) -> None:
        self._data.clear()
        self._users.clear()
        self._revoked.clear()
