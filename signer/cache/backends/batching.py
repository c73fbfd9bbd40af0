"""Coalescing the Redis backend's traffic: the reads of one event-loop iteration in one MGET
(or, for single-token lookups, one script that also leases the keys it finds missing), its
signing leases in one call; its writes (tokens, and tokens stored with their lease let go)
in another (:mod:`~signer.cache.backends.writes`).

A warm service answers most requests from Redis, so the cost of a cache hit is the cost of
the service. Coalesced, a hit does not pay a round trip of its own, and MGET's one reply
array parses far faster than a pipeline of separate replies. Every read also asks for its
user's revocation marker in the same MGET (see :mod:`~signer.cache.backends.layout`), so a
revoked token costs nothing extra to refuse. A login storm is mostly misses: each takes a
lease (in its read's round trip), then stores its token and lets go of the lease, and
those too travel together with the other requests' of the same iteration, so a cold mint
costs a fraction of a round trip, not three of its own.

Writes are not awaited by the request that made them (the token is already in its hands);
the batcher drops them, counted in :attr:`WriteBatcher.dropped`, rather than let a backlog
grow without bound while Redis is slow or away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster

from signer.cache.backends.guard import Guard
from signer.cache.backends.layout import KeyLayout, read_entry
from signer.cache.base import CachedToken, CacheKey

MAX_KEYS_PER_CALL = 512
MAX_NAMES_PER_MGET = 2 * MAX_KEYS_PER_CALL  # a token and its user's revocation marker each
WRITE_TIMEOUT = 1.0  # background writes are on no request's path: big pipelines may take time


def socket_timeout(timeout: float) -> float:
    """The socket timeout of a client whose calls all have budgets of their own (the
    Guard's: ``timeout`` for a read or a lease, longer for a write): the longest budget.
    One of the read budget would fail a write answered in 60 ms on a busy loop, and lose
    its token (the next request for the userid signs again)."""
    return max(timeout, WRITE_TIMEOUT)


Spawn = Callable[[Coroutine[Any, Any, object]], None]
"""Runs a coroutine in the background, where the backend's ``flush``/``close`` can wait."""

Fetch = Callable[[list[bytes]], Awaitable[list[Any]]]
"""One MGET of the given names, values in their order (a cluster splits it per slot)."""

# Reads for many keys in one call that also take the lease of each key found missing:
# a miss is signed next, so its lease travels with its read. KEYS as for LEASE_MANY; the
# reply per key: token, marker, then 1/0 (lease won or not), or -1 when the token was
# there and no lease was tried.
READ_OR_LEASE_MANY = """
local out = {}
for i = 1, #KEYS, 3 do
  local token = redis.call('get', KEYS[i + 1])
  out[#out + 1] = token
  out[#out + 1] = redis.call('get', KEYS[i + 2])
  if token then
    out[#out + 1] = -1
  else
    local won = redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[(i + 2) / 3 + 1])
    out[#out + 1] = won and 1 or 0
  end
end
return out
"""

# Leases for many keys in one call: KEYS are (lease, token, revocation marker) triples, ARGV
# the owner then each lease's TTL in ms. The reply is flat: won (1/0), token, marker per key.
LEASE_MANY = """
local out = {}
for i = 1, #KEYS, 3 do
  local won = redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[(i + 2) / 3 + 1])
  out[#out + 1] = won and 1 or 0
  out[#out + 1] = redis.call('get', KEYS[i + 1])
  out[#out + 1] = redis.call('get', KEYS[i + 2])
end
return out
"""


class _Read:
    """One ``get_many`` call waiting for the MGET that carries its names: one future per
    call, not per key (a batch of 1000 would otherwise make 1000 futures and a gather)."""

    __slots__ = ("future", "keys", "names")

    def __init__(
        self,
        keys: Sequence[CacheKey],
        names: list[bytes],
        future: asyncio.Future[list[CachedToken | None]],
    ) -> None:
        self.keys = keys
        self.names = names  # per key: its token's name, then its user's revocation marker
        self.future = future


class ReadBatcher:
    """Reads of one loop iteration, packed into MGETs of about MAX_NAMES_PER_MGET names."""

    def __init__(self, fetch: Fetch, layout: KeyLayout, guard: Guard, spawn: Spawn) -> None:
        self._fetch = fetch
        self._layout = layout
        self._guard = guard
        self._spawn = spawn
        self._pending: list[_Read] = []
        self._scheduled = False

    def submit(self, keys: Sequence[CacheKey]) -> asyncio.Future[list[CachedToken | None]]:
        """Queue a read admitted by the breaker; the future has one entry (or None) per key
        once the MGET of this iteration has answered, or failed (all None). Not a
        coroutine: the caller's own await is the only one a request pays."""
        token, revocation = self._layout.token, self._layout.revocation
        names: list[bytes] = []
        for key in keys:
            names.append(token(key))
            names.append(revocation(key.sdkappid, key.userid))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[CachedToken | None]] = loop.create_future()
        self._pending.append(_Read(keys, names, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Group this iteration's reads; a call is never split between two MGETs."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        group: list[_Read] = []
        size = 0
        for read in pending:
            if group and size + len(read.names) > MAX_NAMES_PER_MGET:
                self._spawn(self._read(group))
                group, size = [], 0
            group.append(read)
            size += len(read.names)
        if group:
            self._spawn(self._read(group))

    async def _read(self, group: list[_Read]) -> None:
        names = group[0].names if len(group) == 1 else [n for read in group for n in read.names]
        fetch = self._fetch if len(names) <= MAX_NAMES_PER_MGET else self._fetch_parts
        # Each read asked the breaker when it was queued: the MGET carrying a half-open
        # trial must not be refused as a second trial.
        values = await self._guard.call(
            fetch, names, ask_breaker=False, kind="read", commands=len(names) // 2
        )
        if values is None:  # timeout, connection refused, OOM, anything: it is a miss
            values = [None] * len(names)
        offset = 0
        entry = read_entry
        for read in group:
            if not read.future.done():
                read.future.set_result(
                    [
                        entry(values[offset + 2 * i], values[offset + 2 * i + 1], key)
                        for i, key in enumerate(read.keys)
                    ]
                )
            offset += len(read.names)

    async def _fetch_parts(self, names: list[bytes]) -> list[Any]:
        """One large call: its parts travel at once, on several connections."""
        parts = await asyncio.gather(
            *(
                self._fetch(names[start : start + MAX_NAMES_PER_MGET])
                for start in range(0, len(names), MAX_NAMES_PER_MGET)
            )
        )
        return [value for part in parts for value in part]


class _Lease:
    __slots__ = ("future", "key", "names", "ttl_ms")

    def __init__(
        self,
        key: CacheKey,
        names: tuple[bytes, bytes, bytes],
        ttl_ms: int,
        future: asyncio.Future[tuple[bool | None, CachedToken | None]],
    ) -> None:
        self.key = key
        self.names = names  # the lease, the token, the user's revocation marker
        self.ttl_ms = ttl_ms
        self.future = future


class LeaseBatcher:
    """The lease requests of one loop iteration in one pipeline: per key ``SET lease owner
    NX PX``, and a read of its token and its user's marker (a token stored since the miss
    makes signing unnecessary). With ``read_first``, the read comes first and the lease is
    tried only for a key with no token (:data:`READ_OR_LEASE_MANY`): the future's ``won``
    is then None where a token was there."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        owner: bytes,
        layout: KeyLayout,
        guard: Guard,
        budget: float,
        spawn: Spawn,
        one_script: bool = True,
        read_first: bool = False,
    ) -> None:
        """``one_script``: all keys of a group may meet in one script (a single server);
        a cluster's users live in many slots, so it sends a pipeline instead (and cannot
        ``read_first``: its backend reads, then leases)."""
        if read_first and not one_script:
            raise ValueError("read_first needs one script for all keys")
        self._client = client
        self._owner = owner
        self._layout = layout
        self._guard = guard
        self._budget = budget
        self._spawn = spawn
        script = READ_OR_LEASE_MANY if read_first else LEASE_MANY
        self._script = client.register_script(script) if one_script else None
        self._read_first = read_first
        self._pending: list[_Lease] = []
        self._scheduled = False

    def submit(
        self, key: CacheKey, seconds: float
    ) -> asyncio.Future[tuple[bool | None, CachedToken | None]]:
        """Queue a lease request admitted by the breaker. The future is (won, entry); a
        store that cannot answer grants the lease (and reads nothing)."""
        layout = self._layout
        names = (
            layout.lease(key),
            layout.token(key),
            layout.revocation(key.sdkappid, key.userid),
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool | None, CachedToken | None]] = loop.create_future()
        self._pending.append(_Lease(key, names, max(1, int(seconds * 1000)), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_KEYS_PER_CALL):
            self._spawn(self._lease(pending[start : start + MAX_KEYS_PER_CALL]))

    async def _lease(self, group: list[_Lease]) -> None:
        replies = await self._guard.call(
            self._lease_all,
            group,
            budget=self._budget,
            ask_breaker=False,  # asked when queued, as reads are
            kind="read" if self._read_first else "lease",
            commands=1 if self._script is not None else 3 * len(group),
        )
        for index, lease in enumerate(group):
            if lease.future.done():
                continue
            if replies is None:
                lease.future.set_result((True, None))
                continue
            if self._read_first:
                value, revoked, tried = replies[3 * index : 3 * index + 3]
                won = None if tried == -1 else bool(tried)
            else:
                won, value, revoked = replies[3 * index : 3 * index + 3]
                won = bool(won)
            lease.future.set_result((won, read_entry(value, revoked, lease.key)))

    async def _lease_all(self, group: list[_Lease]) -> list[Any]:
        if self._script is not None:
            keys = [name for lease in group for name in lease.names]
            ttls = [lease.ttl_ms for lease in group]
            return list(await self._script(keys, [self._owner, *ttls]))
        pipe = self._client.pipeline(transaction=False)
        for lease in group:
            name, token, revocation = lease.names
            pipe.set(name, self._owner, nx=True, px=lease.ttl_ms)
            pipe.get(token)
            pipe.get(revocation)
        return await pipe.execute()
