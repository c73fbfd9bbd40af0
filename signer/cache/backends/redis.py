"""The Redis backend (standalone server, ``redis://`` or ``rediss://``), shared by every
signer instance and app server.

Redis is an accelerator, not a dependency: every call has a time budget of tens of
milliseconds and goes through a circuit breaker, and a failure of any kind is a miss (for
reads) or a dropped write, never an error for the request. redis-py's own defaults
(seconds-long socket timeouts, several retries) are replaced so no request waits on them.

Reads from concurrent requests are coalesced into one MGET per event-loop iteration and
writes into one pipeline of ``SET ... PX``, so a cache hit does not cost a round trip of
its own. Writes are not awaited by the request that made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from signer.cache import codec
from signer.cache.base import CachedToken, CacheKey
from signer.cache.breaker import CircuitBreaker, State

MAX_KEYS_PER_CALL = 512
MAX_PENDING_WRITES = 50_000


class RedisCache:
    """Token store on one Redis server (or a proxy in front of several)."""

    name = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker()
        self.prefix = prefix
        self.errors = 0
        self.dropped_writes = 0
        self._reads: list[tuple[bytes, asyncio.Future[bytes | None]]] = []
        self._writes: list[tuple[bytes, bytes, int]] = []
        self._read_scheduled = False
        self._write_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._owner = uuid.uuid4().hex.encode()
        # Delete the lease only if it is still ours (it may have expired and been re-taken).
        self._release = client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
            " return 0"
        )

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.05, **kwargs: object) -> RedisCache:
        """A client whose every socket operation gives up within ``timeout`` seconds."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        return cls(client, timeout=timeout, **kwargs)  # type: ignore[arg-type]

    def key(self, key: CacheKey) -> bytes:
        return (self.prefix + key.text()).encode("utf-8", "surrogatepass")

    # -- reads -----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]:
        if not keys or not self.breaker.allow():
            return [None] * len(keys)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes | None]] = []
        for key in keys:
            future: asyncio.Future[bytes | None] = loop.create_future()
            self._reads.append((self.key(key), future))
            futures.append(future)
        if not self._read_scheduled:
            self._read_scheduled = True
            loop.call_soon(self._flush_reads)
        values = await asyncio.gather(*futures)
        return [None if value is None else codec.decode(value) for value in values]

    def _flush_reads(self) -> None:
        self._read_scheduled = False
        pending, self._reads = self._reads, []
        for start in range(0, len(pending), MAX_KEYS_PER_CALL):
            self._spawn(self._mget(pending[start : start + MAX_KEYS_PER_CALL]))

    async def _mget(self, batch: list[tuple[bytes, asyncio.Future[bytes | None]]]) -> None:
        values: list[Any]
        try:
            async with asyncio.timeout(self.timeout):
                values = await self.client.mget([key for key, _ in batch])
            self.breaker.success()
        except Exception:  # timeout, connection refused, OOM, anything: it is a miss
            self._failed()
            values = [None] * len(batch)
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value if isinstance(value, bytes) else None)

    # -- writes ----------------------------------------------------------------------------

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        if not items or self.breaker.state is State.OPEN:
            return
        if wait:
            batch = [(self.key(k), codec.encode(t), ttl * 1000) for k, t, ttl in items if ttl > 0]
            await self._pipeline_set(batch)
            return
        if len(self._writes) + len(items) > MAX_PENDING_WRITES:
            self.dropped_writes += len(items)
            return
        for key, token, ttl in items:
            if ttl > 0:
                self._writes.append((self.key(key), codec.encode(token), ttl * 1000))
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._write_scheduled = False
        pending, self._writes = self._writes, []
        for start in range(0, len(pending), MAX_KEYS_PER_CALL):
            self._spawn(self._pipeline_set(pending[start : start + MAX_KEYS_PER_CALL]))

    async def _pipeline_set(self, batch: list[tuple[bytes, bytes, int]]) -> None:
        if not self.breaker.allow():
            self.dropped_writes += len(batch)
            return
        try:
            async with (
                asyncio.timeout(self.timeout),
                self.client.pipeline(transaction=False) as pipe,
            ):
                for key, value, ttl_ms in batch:
                    pipe.set(key, value, px=ttl_ms)
                await pipe.execute()
            self.breaker.success()
        except Exception:
            self._failed()
            self.dropped_writes += len(batch)

    # -- leases ----------------------------------------------------------------------------

    def _lease_key(self, key: CacheKey) -> bytes:
        return (self.prefix + "lease:" + key.text()).encode("utf-8", "surrogatepass")

    async def acquire_lease(self, key: CacheKey, seconds: float) -> bool:
        if not self.breaker.allow():
            return True
        try:
            async with asyncio.timeout(self.timeout):
                won = await self.client.set(
                    self._lease_key(key), self._owner, nx=True, px=max(1, int(seconds * 1000))
                )
            self.breaker.success()
            return bool(won)
        except Exception:
            self._failed()
            return True

    async def release_lease(self, key: CacheKey) -> None:
        if not self.breaker.allow():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._release(keys=[self._lease_key(key)], args=[self._owner])
            self.breaker.success()
        except Exception:
            self._failed()  # the lease expires by itself

    # -- the rest --------------------------------------------------------------------------

    async def delete(self, keys: Sequence[CacheKey]) -> int:
        if not keys or not self.breaker.allow():
            return 0
        try:
            async with asyncio.timeout(self.timeout):
                deleted = int(await self.client.delete(*[self.key(k) for k in keys]))
            self.breaker.success()
            return deleted
        except Exception:
            self._failed()
            return 0

    def healthy(self) -> bool:
        return self.breaker.state is State.CLOSED

    def _failed(self) -> None:
        self.errors += 1
        self.breaker.failure()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for writes already handed over (tests, shutdown)."""
        if self._write_scheduled:
            self._flush_writes()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=1.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()
