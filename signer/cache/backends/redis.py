"""The Redis backend (standalone server, ``redis://`` or ``rediss://``), shared by every
signer instance and app server.

Redis is an accelerator, not a dependency: every call has a time budget of tens of
milliseconds and goes through a circuit breaker, and a failure of any kind is a miss (for
reads) or a dropped write, never an error for the request. redis-py's own defaults
(seconds-long socket timeouts, several retries) are replaced so no request waits on them.

Layout: one string key per token variant, ``<prefix>{<sdkappid>:<userid>}:<key version>:
<expire>:<userbuf digest>``, holding the compact codec bytes, with a PX expiry. Reads from
concurrent requests are coalesced into one MGET per event-loop iteration and writes into
one pipeline of ``SET ... PX``: a cache hit does not cost a round trip of its own, and
MGET's one reply array parses far faster than a pipeline of separate replies. A logout or
ban (``delete_user``) deletes the keys it knows and leaves a revocation marker
``<prefix>rev:{<sdkappid>:<userid>}`` (read in the same MGET) that retires every other
variant issued before it, for as long as the app's longest token lives. Writes are not
awaited by the request that made them; a revocation is, and raises if Redis does not take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from signer.cache import codec
from signer.cache.backends.packing import use_hiredis_packing
from signer.cache.base import (
    DEFAULT_MAX_LIFETIME,
    CachedToken,
    CacheKey,
    RevocationNotRecorded,
)
from signer.cache.breaker import CircuitBreaker, State

MAX_KEYS_PER_CALL = 512
MAX_NAMES_PER_MGET = 2 * MAX_KEYS_PER_CALL  # a token and its user's revocation marker each
MAX_PENDING_WRITES = 50_000
LEASE_TIMEOUT = 0.5
REVOCATION_MARGIN = 60  # seconds a marker outlives max_expire: token writes still in flight
REVOCATION_BUDGET = 1.0  # seconds a logout or ban may spend on tries before it is refused
REVOCATION_FIRST_PAUSE = 0.05  # between its tries, doubling
WRITE_TIMEOUT = 1.0  # background writes are on no request's path: big pipelines may take time
PROBE_TIMEOUT = 0.5  # a health check's PING is on no request's path either


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


class LoopLag:
    """How late the event loop runs its callbacks: a 10 ms heartbeat that starts with the
    first question. A heartbeat that is overdue right now counts too, so a loop blocked by
    a large batch is recognised while it is still blocked."""

    INTERVAL = 0.01

    def __init__(self) -> None:
        self._lag = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def lag(self) -> float:
        loop = asyncio.get_running_loop()
        if self._handle is None:
            self._schedule(loop, loop.time())
        return max(self._lag, loop.time() - self._due)

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.INTERVAL
        self._handle = loop.call_at(self._due, self._beat, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self._lag = max(now - self._due, self._lag * 0.5)  # decays once the burst is over
        self._schedule(loop, now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class RedisCache:
    """Token store on one Redis server (or a proxy in front of several)."""

    name = "redis"
    process_local = False

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float = 0.05,
        breaker: CircuitBreaker | None = None,
        prefix: str = "signer:",
    ) -> None:
        self.client = client
        use_hiredis_packing(client)
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker()
        self.prefix = prefix
        self.errors = 0
        self.dropped_writes = 0
        self._reads: list[_Read] = []
        self._writes: list[tuple[bytes, bytes, int]] = []
        self._read_scheduled = False
        self._write_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._owner = uuid.uuid4().hex.encode()
        self._lag = LoopLag()
        self._health_listeners: list[Callable[[bool], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self.breaker.add_listener(self._breaker_changed)
        self.subscriber: Redis = client
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
        cache = cls(client, timeout=timeout, **kwargs)  # type: ignore[arg-type]
        # Subscriptions wait for messages indefinitely: they get a connection of their own
        # without the request budget as socket timeout.
        cache.subscriber = Redis.from_url(
            url, socket_connect_timeout=max(timeout, 1.0), health_check_interval=30
        )
        return cache

    # Keys of one user share the hash tag {sdkappid:userid}: in a cluster, a token and its
    # user's revocation marker live in one slot and can be read together.

    def key(self, key: CacheKey) -> bytes:
        text = (
            f"{self.prefix}{{{key.sdkappid}:{key.userid}}}:"
            f"{key.key_version}:{key.expire}:{key.userbuf_digest}"
        )
        return text.encode("utf-8", "surrogatepass")

    def revocation_key(self, sdkappid: int, userid: str) -> bytes:
        return f"{self.prefix}rev:{{{sdkappid}:{userid}}}".encode("utf-8", "surrogatepass")

    async def _mget_call(self, keys: list[bytes]) -> list[Any]:
        return list(await self.client.mget(keys))

    def user_key(self, sdkappid: int, userid: str) -> bytes:
        """What an eviction broadcast names: the user, not a token."""
        return f"{self.prefix}{sdkappid}:{userid}".encode("utf-8", "surrogatepass")

    @staticmethod
    def _entry(value: object, revoked: object, key: CacheKey) -> CachedToken | None:
        # The display version is the cache version without its key fingerprint.
        version = key.key_version.partition("~")[0]
        entry = codec.decode(value, version) if isinstance(value, bytes) else None
        revoked_at = int(revoked) if isinstance(revoked, bytes) and revoked.isdigit() else -1
        if entry is not None and entry.issued_at * 1000 <= revoked_at:
            return None  # issued before the user's last logout or ban
        return entry

    # -- reads -----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]:
        if not keys or not self.breaker.allow():
            return [None] * len(keys)
        names: list[bytes] = []
        for key in keys:
            names.append(self.key(key))
            names.append(self.revocation_key(key.sdkappid, key.userid))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[CachedToken | None]] = loop.create_future()
        self._reads.append(_Read(keys, names, future))
        if not self._read_scheduled:
            self._read_scheduled = True
            loop.call_soon(self._flush_reads)
        return await future

    def _flush_reads(self) -> None:
        """Pack the calls of this loop iteration into MGETs of about MAX_NAMES_PER_MGET
        names; a call is never split between two of them."""
        self._read_scheduled = False
        pending, self._reads = self._reads, []
        group: list[_Read] = []
        size = 0
        for read in pending:
            if group and size + len(read.names) > MAX_NAMES_PER_MGET:
                self._spawn(self._mget(group))
                group, size = [], 0
            group.append(read)
            size += len(read.names)
        if group:
            self._spawn(self._mget(group))

    async def _mget(self, group: list[_Read]) -> None:
        names = group[0].names if len(group) == 1 else [n for read in group for n in read.names]
        values: list[Any]
        try:
            async with asyncio.timeout(self.timeout):
                if len(names) <= MAX_NAMES_PER_MGET:
                    values = await self._mget_call(names)
                else:  # one large call: its parts travel at once, on several connections
                    parts = await asyncio.gather(
                        *(
                            self._mget_call(names[start : start + MAX_NAMES_PER_MGET])
                            for start in range(0, len(names), MAX_NAMES_PER_MGET)
                        )
                    )
                    values = [value for part in parts for value in part]
            self.breaker.success()
        except Exception as error:  # timeout, connection refused, OOM, anything: it is a miss
            self._failed(error)
            values = [None] * len(names)
        offset = 0
        entry = self._entry
        for read in group:
            if not read.future.done():
                read.future.set_result(
                    [
                        entry(values[offset + 2 * i], values[offset + 2 * i + 1], key)
                        for i, key in enumerate(read.keys)
                    ]
                )
            offset += len(read.names)

    # -- writes ----------------------------------------------------------------------------

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        if not items or self.breaker.state is State.OPEN:
            return
        encoded = [(self.key(k), codec.encode(t), ttl * 1000) for k, t, ttl in items if ttl > 0]
        if wait:
            await self._pipeline_set(encoded, max(self.timeout, LEASE_TIMEOUT))
            return
        if len(self._writes) + len(encoded) > MAX_PENDING_WRITES:
            self.dropped_writes += len(encoded)
            return
        self._writes.extend(encoded)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._write_scheduled = False
        pending, self._writes = self._writes, []
        for start in range(0, len(pending), MAX_KEYS_PER_CALL):
            batch = pending[start : start + MAX_KEYS_PER_CALL]
            self._spawn(self._pipeline_set(batch, max(self.timeout, WRITE_TIMEOUT)))

    async def _pipeline_set(
        self, batch: list[tuple[bytes, bytes, int]], timeout: float | None = None
    ) -> None:
        if not self.breaker.allow():
            self.dropped_writes += len(batch)
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, value, ttl_ms in batch:
                pipe.set(key, value, px=ttl_ms)
            async with asyncio.timeout(timeout or self.timeout):
                await pipe.execute()
            self.breaker.success()
        except Exception as error:
            self._failed(error)
            self.dropped_writes += len(batch)

    # -- leases ----------------------------------------------------------------------------

    def _lease_key(self, key: CacheKey) -> bytes:
        return (self.prefix + "lease:" + key.text()).encode("utf-8", "surrogatepass")

    async def acquire_lease(self, key: CacheKey, seconds: float) -> tuple[bool, CachedToken | None]:
        """Try for the lease and read the entry in the same round trip."""
        if not self.breaker.allow():
            return True, None
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self._lease_key(key), self._owner, nx=True, px=max(1, int(seconds * 1000)))
            pipe.get(self.key(key))
            pipe.get(self.revocation_key(key.sdkappid, key.userid))
            # A lease is asked for on a miss, when signing (milliseconds) follows anyway; a
            # longer budget here keeps a busy event loop from mistaking its own backlog
            # for a slow Redis and signing twice.
            async with asyncio.timeout(max(self.timeout, LEASE_TIMEOUT)):
                won, value, revoked = await pipe.execute()
            self.breaker.success()
        except Exception as error:
            self._failed(error)
            return True, None
        return bool(won), self._entry(value, revoked, key)

    async def release_lease(self, key: CacheKey) -> None:
        """Let go of the lease in the background (it also expires by itself)."""
        if self.breaker.allow():
            self._spawn(self._release_now(key))

    async def _release_now(self, key: CacheKey) -> None:
        try:
            async with asyncio.timeout(max(self.timeout, LEASE_TIMEOUT)):
                await self._release(keys=[self._lease_key(key)], args=[self._owner])
            self.breaker.success()
        except Exception as error:
            self._failed(error)  # the lease expires by itself

    # -- eviction broadcast ------------------------------------------------------------------

    @property
    def eviction_channel(self) -> bytes:
        return (self.prefix + "evictions").encode()

    async def publish_eviction(self, sdkappid: int, userid: str) -> None:
        """Tell every instance to drop this user from its in-process cache."""
        if not self.breaker.allow():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.publish(self.eviction_channel, self.user_key(sdkappid, userid))
            self.breaker.success()
        except Exception as error:
            self._failed(error)

    async def listen_evictions(self, evict: Callable[[int, str], None]) -> None:
        """Run forever: call ``evict(sdkappid, userid)`` for every broadcast eviction,
        reconnecting (with a pause) whenever Redis goes away."""
        prefix = self.prefix.encode()
        while True:
            try:
                async with self.subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(self.eviction_channel)
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if message.get("type") != "message" or not isinstance(data, bytes):
                            continue
                        appid, _, userid = (
                            data.removeprefix(prefix).decode("utf-8", "replace").partition(":")
                        )
                        if appid.isdigit():
                            evict(int(appid), userid)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1.0)

    # -- the rest --------------------------------------------------------------------------

    async def delete(self, keys: Sequence[CacheKey]) -> int:
        if not keys or not self.breaker.allow():
            return 0
        try:
            async with asyncio.timeout(self.timeout):
                deleted = int(await self.client.delete(*[self.key(k) for k in keys]))
            self.breaker.success()
            return deleted
        except Exception as error:
            self._failed(error)
            return 0

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
        pause or failover should not turn a ban into an error. If no try gets through, the
        failure counts for the breaker and :class:`RevocationNotRecorded` is raised."""
        names = [self.key(k) for k in known]
        marker = self.revocation_key(sdkappid, userid)
        now_ms = int(time.time() * 1000)  # every try records the time of the request
        ttl_ms = (max_lifetime + REVOCATION_MARGIN) * 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOCATION_BUDGET
        pause = REVOCATION_FIRST_PAUSE
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.set(marker, now_ms, px=ttl_ms)
                if names:
                    pipe.delete(*names)
                async with asyncio.timeout_at(deadline):
                    replies = await pipe.execute()
            except Exception as error:
                if loop.time() + pause < deadline:
                    await asyncio.sleep(pause)
                    pause *= 2
                    continue
                self._failed(error)
                raise RevocationNotRecorded(self.name, self.breaker.reset_after) from error
            self.breaker.success()
            return int(replies[1]) if names else 0

    def healthy(self) -> bool:
        return self.breaker.state is State.CLOSED

    # -- health ----------------------------------------------------------------------------

    async def probe(self) -> bool:
        """Ask Redis now (PING) whether it answers, and count the answer in the breaker
        like any call's, so :meth:`healthy` says it at once. While the breaker is closed a
        failed PING is asked again, up to its failure threshold: a lost packet does not
        open it, a dead server does. Never raises.

        Also starts the health check that keeps :meth:`healthy` true while no request
        asks Redis anything (see :meth:`_watch`)."""
        self._start_watch()
        for _ in range(self.breaker.failure_threshold):
            try:
                async with asyncio.timeout(max(self.timeout, PROBE_TIMEOUT)):
                    await self.client.ping()
            except Exception as error:
                self._failed(error)
                if self.breaker.state is not State.CLOSED:
                    return False
            else:
                self.breaker.success()
                return True
        return False

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` each time :meth:`healthy` changes: once when Redis stops
        answering (the breaker opens), once when it answers again (the breaker closes);
        never for the trial calls in between."""
        self._health_listeners.append(listener)

    def _breaker_changed(self, old: State, new: State) -> None:
        if new is not State.CLOSED:
            self._start_watch()
        if (old is State.CLOSED) != (new is State.CLOSED):
            for listener in self._health_listeners:
                listener(new is State.CLOSED)

    def _start_watch(self) -> None:
        if self._closed or (self._watcher is not None and not self._watcher.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a breaker driven by hand, outside any event loop
            return
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Every ``reset_after`` seconds, PING Redis if the breaker is not closed or no
        call has reached Redis since the last round. Requests alone would leave an idle
        instance's health (readiness, ``signer_cache_up``) as it was when the last one
        left: down forever after Redis returned, or up while it is gone. Busy instances
        send nothing more: their requests are the check."""
        breaker = self.breaker
        while True:
            await asyncio.sleep(breaker.reset_after)
            if breaker.state is State.CLOSED and breaker.idle_for() < breaker.reset_after:
                continue
            await self.probe()

    def _failed(self, error: BaseException | None = None) -> None:
        """Count a failure against the breaker, unless it is a timeout while our own event
        loop was too busy to read the reply in time (a request burst): that says nothing
        about Redis. Refused or broken connections always count."""
        self.errors += 1
        if isinstance(error, TimeoutError) and self._lag.lag() >= self.timeout / 2:
            return
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
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._lag.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=1.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()
        if self.subscriber is not self.client:
            with contextlib.suppress(Exception):
                await self.subscriber.aclose()
