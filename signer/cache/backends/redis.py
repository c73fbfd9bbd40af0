"""The Redis backend (standalone server, ``redis://`` or ``rediss://``), shared by every
signer instance and app server.

Redis is an accelerator, not a dependency: every call goes through one guard (a time budget
of tens of milliseconds, a circuit breaker: :mod:`~signer.cache.backends.guard`), and a
failure of any kind is a miss (for reads) or a held write, never an error for the
request. redis-py's own defaults (seconds-long socket timeouts, several retries) are
replaced so no request waits on them.

What is stored under which name is :mod:`~signer.cache.backends.layout`; reads and writes
are coalesced per event-loop iteration by :mod:`~signer.cache.backends.batching`; the
health check of an idle instance is :mod:`~signer.cache.backends.health`. What stays here
is the store itself: its calls, signing leases, logouts and bans (``delete_user``: the one
call that raises, since a ban reported done but not made is worse than an error), and the
pub/sub broadcast that empties other instances' in-process caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Self

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from signer.cache import codec
from signer.cache.backends.batching import LeaseBatcher, ReadBatcher, socket_timeout
from signer.cache.backends.guard import Guard
from signer.cache.backends.health import HealthWatch
from signer.cache.backends.layout import KeyLayout
from signer.cache.backends.packing import use_hiredis_packing
from signer.cache.backends.warm import WarmState, member
from signer.cache.backends.writes import WriteBatcher
from signer.cache.base import (
    DEFAULT_MAX_LIFETIME,
    CachedToken,
    CacheKey,
    RevocationNotRecorded,
    WarmMark,
)
from signer.cache.breaker import CircuitBreaker, State

AWAITED_WRITE_TIMEOUT = 0.5  # a write its caller waits for (set_many(wait=True))
REVOCATION_MARGIN = 60  # seconds a marker outlives max_expire: token writes still in flight
REVOCATION_BUDGET = 1.0  # seconds a logout or ban may spend on tries before it is refused
REVOCATION_FIRST_PAUSE = 0.05  # between its tries, doubling
CLUSTER_WARM_SHARDS = 16
"""Keep-warm's sets per app on a cluster: enough to spread one app over a few masters'
slots; each pass of the claim visits every shard (one script each)."""
LISTEN_POLL = 0.5  # seconds the eviction listener waits for a message before looking up

Client = Redis | RedisCluster


class RedisCache:
    """Token store on one Redis server (or a proxy in front of several)."""

    name = "redis"
    process_local = False

    def __init__(
        self,
        client: Client,
        *,
        subscriber: Redis | None = None,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> None:
        """``subscriber`` is the connection eviction broadcasts are listened on (default:
        ``client``); ``timeout`` is the budget of a call on the request path, in seconds."""
        self.client = client
        use_hiredis_packing(client)
        self.subscriber: Client = client if subscriber is None else subscriber
        self.timeout = timeout
        self.guard = Guard(breaker or CircuitBreaker(), timeout)
        self.breaker = self.guard.breaker
        one_script = not isinstance(client, RedisCluster)  # a cluster's keys span slots
        self.layout = KeyLayout(prefix, warm_shards=1 if one_script else CLUSTER_WARM_SHARDS)
        self.prefix = prefix
        self.clock: Callable[[], float] = time.time
        """The time a logout or ban records (tests move it with the issuer's clock)."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._owner = uuid.uuid4().hex.encode()
        self._reads = ReadBatcher(self._mget_call, self.layout, self.guard, self._spawn)
        self._writes = WriteBatcher(client, self.guard, self._spawn, self._owner, one_script)
        # A lease is asked for on a request's path (with its read, or while waiting on
        # another instance's): the read's budget, so a paused Redis costs a request no more
        # than ``timeout``. A busy loop's own lag is not held against Redis (the Guard).
        lease_budget = timeout
        self._leases = LeaseBatcher(
            client, self._owner, self.layout, self.guard, lease_budget, self._spawn, one_script
        )
        self._read_leases = (
            LeaseBatcher(
                client,
                self._owner,
                self.layout,
                self.guard,
                lease_budget,
                self._spawn,
                read_first=True,
            )
            if one_script
            else None
        )
        self._health = HealthWatch(self.guard, client.ping)
        self.warm = WarmState(client, self.layout, self.guard, self._mget_call)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> Self:
        """A client that connects within ``timeout`` seconds and whose calls give up within
        their budgets (``timeout`` for a read)."""
        client = Redis.from_url(
            url,
            socket_timeout=socket_timeout(timeout),
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        # Subscriptions wait for messages indefinitely: they get a connection of their own
        # without the request budget as socket timeout.
        subscriber = Redis.from_url(
            url, socket_connect_timeout=max(timeout, 1.0), health_check_interval=30
        )
        return cls(client, subscriber=subscriber, timeout=timeout, breaker=breaker, prefix=prefix)

    @property
    def errors(self) -> int:
        """Calls to Redis that failed or timed out (:attr:`Guard.errors`)."""
        return self.guard.errors

    @property
    def dropped_writes(self) -> int:
        """Token writes never made (:attr:`WriteBatcher.dropped`)."""
        return self._writes.dropped

    @property
    def lost_marks(self) -> int:
        """Keep-warm marks never written (:attr:`WriteBatcher.dropped_marks`)."""
        return self._writes.dropped_marks

    @property
    def held_writes(self) -> int:
        """Token writes held until Redis can take them (:mod:`~signer.cache.backends.held`)."""
        return self._writes.held

    def key(self, key: CacheKey) -> bytes:
        """The name a token is stored under (:meth:`KeyLayout.token`)."""
        return self.layout.token(key)

    async def _mget_call(self, names: list[bytes]) -> list[Any]:
        """One MGET; the cluster backend splits it per slot instead."""
        return list(await self.client.mget(names))

    # -- tokens ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]:
        if not keys or not self.breaker.allow():
            return [None] * len(keys)
        return await self._reads.submit(keys)

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        if not items or (wait and self.breaker.state is State.OPEN):
            return  # (not waited for, the batcher holds them while the breaker is open)
        name = self.layout.token
        encoded = [(name(k), codec.encode(t), ttl * 1000) for k, t, ttl in items if ttl > 0]
        if wait:
            await self._writes.write(encoded, max(self.timeout, AWAITED_WRITE_TIMEOUT))
        else:
            self._writes.submit(encoded)

    async def delete(self, keys: Sequence[CacheKey]) -> int:
        if not keys:
            return 0
        names = [self.key(k) for k in keys]
        deleted = await self.guard.call(self.client.delete, *names, kind="delete")
        return 0 if deleted is None else int(deleted)

    def track(self, marks: Sequence[WarmMark]) -> None:
        """Queue keep-warm's marks with this iteration's writes
        (:mod:`~signer.cache.backends.writes`); dropped while the breaker is open."""
        if not marks:
            return
        if self.breaker.state is State.OPEN:
            self._writes.dropped_marks += len(marks)
            return
        layout, writes = self.layout, self._writes
        for mark in marks:
            if mark.due_ms is not None:
                mode = "NX" if mark.due_if_untracked else ""
                name = layout.warm_due(mark.sdkappid, layout.warm_shard(mark.userid))
                variant = member(mark.expire, mark.userid)
                writes.mark(name, variant, mark.due_ms, mode, mark.keep_ms)
            if mark.seen_ms is not None:
                name = layout.warm_seen(mark.sdkappid, layout.warm_shard(mark.userid))
                user = mark.userid.encode("utf-8", "surrogatepass")
                writes.mark(name, user, mark.seen_ms, "GT", mark.keep_ms)

    # -- leases ----------------------------------------------------------------------------

    async def acquire_lease(self, key: CacheKey, seconds: float) -> tuple[bool, CachedToken | None]:
        """Try for the lease and read the entry in the same round trip, which carries the
        other lease requests of this loop iteration too
        (:class:`~signer.cache.backends.batching.LeaseBatcher`)."""
        if not self.breaker.allow():
            return True, None
        won, entry = await self._leases.submit(key, seconds)
        return bool(won), entry

    async def read_or_lease(
        self, key: CacheKey, seconds: float
    ) -> tuple[CachedToken | None, bool | None]:
        """The entry, and for a key with none the lease tried in the same round trip
        (:data:`~signer.cache.backends.batching.READ_OR_LEASE_MANY`). A cluster reads,
        then leases: one script cannot span its slots."""
        if self._read_leases is None:
            (entry,) = await self.get_many([key])
            if entry is not None:
                return entry, None
            won, entry = await self.acquire_lease(key, seconds)
            return entry, won
        if not self.breaker.allow():
            return None, True  # a store that cannot answer grants the lease
        tried, found = await self._read_leases.submit(key, seconds)
        return found, tried

    async def release_lease(
        self, key: CacheKey, store: tuple[CachedToken, int] | None = None
    ) -> None:
        """Let go of the lease in the background (it also expires by itself), storing
        ``store`` (a token and its TTL in seconds) first in the same script: the instances
        waiting on the lease read exactly that write. Batched with this iteration's other
        writes; the caller does not wait for it. While the breaker is open, the token is
        held until Redis can take it (the lease expires by itself)."""
        lease = self.layout.lease(key)
        if store is None or store[1] <= 0:
            self._writes.settle((lease, None, b"", 0))
        else:
            token, ttl = store
            self._writes.settle((lease, self.layout.token(key), codec.encode(token), ttl * 1000))

    # -- logouts and bans ------------------------------------------------------------------

    async def delete_user(
        self,
        sdkappid: int,
        userid: str,
        known: Sequence[CacheKey] = (),
        *,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> int:
        """Retire every cached token of one user: delete the ``known`` variants now and
        leave a revocation marker, read with every lookup, for all the others. The marker
        lives ``max_lifetime`` seconds (+ a margin): no token issued before it outlives that.

        Unlike any other call this one is made while the breaker is open (it guards the
        token path; logouts are rare and a security action), and tried again within
        REVOCATION_BUDGET: Redis answers each try within the client's timeout, and a brief
        pause or failover should not turn a ban into an error. So it keeps its own try
        instead of :meth:`Guard.call`: only if no try gets through does the failure count,
        once, and :class:`RevocationNotRecorded` is raised.

        The user also leaves keep-warm (its ``seen`` set), in the same pipeline: no
        background re-sign is claimed for them after this (a claim also checks the marker,
        for a "seen" mark landing late), and one already claimed signs its token as of its
        claim, so the marker retires it (:mod:`signer.cache.warming`)."""
        names = [self.key(k) for k in known]
        seen = self.layout.warm_seen(sdkappid, self.layout.warm_shard(userid))
        user = userid.encode("utf-8", "surrogatepass")
        marker = self.layout.revocation(sdkappid, userid)
        now_ms = int(self.clock() * 1000)  # every try records the time of the request
        ttl_ms = (max_lifetime + REVOCATION_MARGIN) * 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOCATION_BUDGET
        pause = REVOCATION_FIRST_PAUSE
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.set(marker, now_ms, px=ttl_ms)
                pipe.zrem(seen, user)
                if names:
                    pipe.delete(*names)
                self.guard.round_trips["revoke"] += 1
                self.guard.commands["revoke"] += 2 + bool(names)
                async with asyncio.timeout_at(min(deadline, loop.time() + self.timeout)):
                    replies = await pipe.execute()
            except Exception as error:
                if loop.time() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause *= 2
                    continue
                self.guard.failed(error)
                raise RevocationNotRecorded(self.name, self.breaker.reset_after) from error
            self.guard.succeeded()
            return int(replies[2]) if names else 0

    # -- eviction broadcast ----------------------------------------------------------------

    @property
    def eviction_channel(self) -> bytes:
        return self.layout.eviction_channel

    async def publish_eviction(self, sdkappid: int, userid: str) -> None:
        """Tell every instance to drop this user from its in-process cache."""
        await self.guard.call(
            self.client.publish,
            self.layout.eviction_channel,
            self.layout.user(sdkappid, userid),
            kind="publish",
        )

    async def listen_evictions(self, evict: Callable[[int, str], None]) -> None:
        """Run forever: call ``evict(sdkappid, userid)`` for every broadcast eviction,
        reconnecting (with a pause) whenever Redis goes away."""
        task = asyncio.current_task()
        while True:
            try:
                async with self.subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(self.layout.eviction_channel)
                    while True:
                        # A wait of its own per message: redis-py can swallow a cancel
                        # that lands in its read, and this task must still end (close).
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=LISTEN_POLL
                        )
                        if task is not None and task.cancelling():
                            raise asyncio.CancelledError
                        data = None if message is None else message.get("data")
                        if message is None or message.get("type") != "message":
                            continue
                        user = self.layout.evicted_user(data) if isinstance(data, bytes) else None
                        if user is not None:
                            evict(*user)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Leaving the subscription while cancelled can raise something else (the
                # connection's own teardown): that must not turn a cancel into a retry.
                if task is not None and task.cancelling():
                    raise
                await asyncio.sleep(1.0)

    # -- health and lifetime ---------------------------------------------------------------

    def healthy(self) -> bool:
        return self.breaker.state is State.CLOSED

    async def probe(self) -> bool:
        """Ask Redis now (PING) and count the answer in the breaker, so :meth:`healthy`
        says it at once; also starts the check that keeps it true on an idle instance
        (:class:`~signer.cache.backends.health.HealthWatch`). Never raises."""
        return await self._health.probe()

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        self._health.on_change(listener)

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for writes already handed over (tests, shutdown)."""
        self._writes.flush_queued()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self._health.close()
        self.guard.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=1.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()
        if self.subscriber is not self.client:
            with contextlib.suppress(Exception):
                await self.subscriber.aclose()
