"""Coalescing the Redis backend's traffic: the reads of one event-loop iteration in one MGET,
its writes in one pipeline of ``SET ... PX``.

A warm service answers most requests from Redis, so the cost of a cache hit is the cost of
the service. Coalesced, a hit does not pay a round trip of its own, and MGET's one reply
array parses far faster than a pipeline of separate replies. Every read also asks for its
user's revocation marker in the same MGET (see :mod:`~signer.cache.backends.layout`), so a
revoked token costs nothing extra to refuse.

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
MAX_PENDING_WRITES = 50_000
WRITE_TIMEOUT = 1.0  # background writes are on no request's path: big pipelines may take time

Spawn = Callable[[Coroutine[Any, Any, object]], None]
"""Runs a coroutine in the background, where the backend's ``flush``/``close`` can wait."""

Fetch = Callable[[list[bytes]], Awaitable[list[Any]]]
"""One MGET of the given names, values in their order (a cluster splits it per slot)."""

Write = tuple[bytes, bytes, int]
"""A name, its codec bytes and its TTL in milliseconds."""


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
        values = await self._guard.call(fetch, names, ask_breaker=False)
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


class WriteBatcher:
    """Writes of one loop iteration, sent as pipelines of at most MAX_KEYS_PER_CALL SETs."""

    def __init__(self, client: Redis | RedisCluster, guard: Guard, spawn: Spawn) -> None:
        self._client = client
        self._guard = guard
        self._spawn = spawn
        self._pending: list[Write] = []
        self._scheduled = False
        self.dropped = 0
        """Writes never made: refused by the breaker, failed, or over MAX_PENDING_WRITES."""

    def submit(self, writes: list[Write]) -> None:
        """Queue writes for the end of this loop iteration, or drop them if the queue is
        full (Redis slower than the traffic for a while: memory must not follow)."""
        if len(self._pending) + len(writes) > MAX_PENDING_WRITES:
            self.dropped += len(writes)
            return
        self._pending.extend(writes)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush_queued(self) -> None:
        """Send what is queued now instead of at the end of the iteration (shutdown)."""
        if self._scheduled:
            self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        budget = max(self._guard.timeout, WRITE_TIMEOUT)
        for start in range(0, len(pending), MAX_KEYS_PER_CALL):
            self._spawn(self.write(pending[start : start + MAX_KEYS_PER_CALL], budget))

    async def write(self, batch: list[Write], budget: float) -> None:
        """One pipeline of ``SET name value PX ttl`` for ``batch``, now."""
        if await self._guard.call(self._set_all, batch, budget=budget) is None:
            self.dropped += len(batch)

    async def _set_all(self, batch: list[Write]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for name, value, ttl_ms in batch:
            pipe.set(name, value, px=ttl_ms)
        return await pipe.execute()
