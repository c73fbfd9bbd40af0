"""The Redis backend's writes, coalesced per event-loop iteration: tokens stored, tokens
stored with their signing lease let go (settlements), and keep-warm's bookkeeping.

Writes are not awaited by the request that made them (the token is already in its hands).
Those Redis cannot take (the breaker open, or the call failed) are held and made when it can
(:mod:`~signer.cache.backends.held`); beyond a bound, they are dropped, counted in
:attr:`WriteBatcher.dropped`, rather than let a backlog grow without bound while Redis is
slow or away.

Keep-warm (:mod:`signer.cache.keepwarm`) records, for each token stored, when it is due for
a re-sign, and for each user who asked, when. Those marks ride in the round trip the
iteration's token writes take anyway: on one server, inside the settlement script; in a
cluster, in the same pipeline (redis-py sends each node its part). An iteration with
marks and no token write (hits only) sends them in one pipeline of its own: one ZADD per
app, however many users.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster

from signer.cache.backends.batching import MAX_KEYS_PER_CALL, WRITE_TIMEOUT, Spawn
from signer.cache.backends.guard import Guard
from signer.cache.backends.held import HeldWrites, Write
from signer.cache.breaker import State

MAX_PENDING_WRITES = 50_000
MAX_PENDING_MARKS = 100_000

Settle = tuple[bytes, bytes | None, bytes, int]
"""A lease to let go of, and the token to store before (name, codec bytes, TTL in ms), or
``None`` and two ignored fields to only let go."""

Marks = dict[bytes, tuple[str, int, dict[bytes, int]]]
"""Sorted-set writes by set name: (ZADD's mode: "" to set scores, "GT" to only raise them,
"NX" to only add new members; the set's TTL in ms; member -> score)."""

# Store the token (if any), then delete the lease only if it is still ours: it may have
# expired and been taken by another instance, whose lease this must not end. The token and
# its lease share a hash tag, so in a cluster both live in one slot, as a script needs.
SETTLE = (
    "if ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3]) end "
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end return 1"
)

# The same for many keys in one call, where all keys may meet in one script (one server,
# not a cluster), with keep-warm's marks: KEYS are n (lease, token) pairs, then the sorted
# sets marked; ARGV the owner, n, (value, TTL in ms) per pair (an empty value to only let
# go), then per sorted set: ZADD's mode ('', 'GT' or 'NX'), its TTL in ms,
# the count c of members, c (score, member) pairs. One command and one reply instead of one
# of each per key: redis-py spends far more of the event loop per command than Redis does.
SETTLE_MANY = """
local n = tonumber(ARGV[2])
for i = 1, n do
  local value = ARGV[2 * i + 1]
  if value ~= '' then redis.call('set', KEYS[2 * i], value, 'PX', ARGV[2 * i + 2]) end
  if redis.call('get', KEYS[2 * i - 1]) == ARGV[1] then redis.call('del', KEYS[2 * i - 1]) end
end
local a = 2 * n + 3
for k = 2 * n + 1, #KEYS do
  local mode, keep, c = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  for j = a, a + 2 * c - 1, 2 do
    if mode == '' then
      redis.call('zadd', KEYS[k], ARGV[j], ARGV[j + 1])
    else
      redis.call('zadd', KEYS[k], mode, ARGV[j], ARGV[j + 1])
    end
  end
  a = a + 2 * c
  redis.call('pexpire', KEYS[k], keep)
end
return n
"""


class WriteBatcher:
    """Writes of one loop iteration, sent as pipelines of at most MAX_KEYS_PER_CALL
    commands: plain token writes, and settlements (a token stored, then its lease let go,
    in one script per key), with the iteration's keep-warm marks in the first of them."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        guard: Guard,
        spawn: Spawn,
        owner: bytes = b"",
        one_script: bool = True,
    ) -> None:
        """``one_script``: all keys of a call may meet in one script (a single server)."""
        self._client = client
        self._guard = guard
        self._spawn = spawn
        self._owner = owner
        self._script = client.register_script(SETTLE_MANY) if one_script else None
        self._pending: list[Write] = []
        self._settling: list[Settle] = []
        self._marks: Marks = {}
        self._marked = 0
        self._scheduled = False
        self._held = HeldWrites(MAX_PENDING_WRITES)
        self._releasing = False
        guard.breaker.add_listener(self._on_breaker)
        self.dropped = 0
        """Writes never made: over MAX_PENDING_WRITES (queued or held), expired while held,
        or failed again when the held writes were made."""
        self.dropped_marks = 0
        """Keep-warm marks never made, for the same reasons (over MAX_PENDING_MARKS)."""

    @property
    def held(self) -> int:
        """Writes held until Redis can take them."""
        return len(self._held)

    def submit(self, writes: list[Write]) -> None:
        """Queue writes for the end of this loop iteration; hold them while the breaker is
        open; drop them if the queue is full (Redis slower than the traffic for a while:
        memory must not follow)."""
        if self._guard.breaker.state is State.OPEN:
            self._hold(writes)
            return
        if len(self._pending) + len(writes) > MAX_PENDING_WRITES:
            self.dropped += len(writes)
            return
        self._pending.extend(writes)
        self._schedule()

    def settle(self, item: Settle) -> None:
        """Queue a settlement: its token (if any) stored, then its lease let go. While the
        breaker is open its token is held (the lease expires by itself); dropped like a
        write when the queue is full."""
        if self._guard.breaker.state is State.OPEN:
            self._hold(_tokens_of([item]))
            return
        if len(self._pending) + len(self._settling) >= MAX_PENDING_WRITES:
            self.dropped += item[1] is not None
            return
        self._settling.append(item)
        self._schedule()

    def mark(self, name: bytes, member: bytes, score: int, mode: str, keep_ms: int) -> None:
        """Queue ``ZADD name [mode] score member`` (``mode`` "", "GT" or "NX"; one per
        set name) and the set's TTL (``keep_ms``) for this iteration's writes. A member
        marked twice in one iteration keeps the last score."""
        if self._marked >= MAX_PENDING_MARKS:
            self.dropped_marks += 1
            return
        entry = self._marks.get(name)
        if entry is None:
            entry = self._marks[name] = (mode, keep_ms, {})
        entry[2][member] = score
        self._marked += 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush_queued(self) -> None:
        """Send what is queued now instead of at the end of the iteration (shutdown), and
        the held writes if their turn has come."""
        if self._scheduled:
            self._flush()
        if self._releasing:
            self._release()

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        settling, self._settling = self._settling, []
        marks, self._marks, self._marked = self._marks, {}, 0
        budget = max(self._guard.timeout, WRITE_TIMEOUT)
        if self._script is not None and settling:  # settlements in scripts, writes apart
            for start in range(0, len(settling), MAX_KEYS_PER_CALL):
                part = settling[start : start + MAX_KEYS_PER_CALL]
                self._spawn(self._settle(part, budget, marks))
                marks = {}
            settling = []
        while pending or settling:  # settlements first: other instances wait on them
            room = MAX_KEYS_PER_CALL
            settles, settling = settling[:room], settling[room:]
            room -= len(settles)
            writes, pending = pending[:room], pending[room:]
            self._spawn(self.write(writes, budget, settles, marks))
            marks = {}
        if marks:
            self._spawn(self.write([], budget, (), marks))

    async def _settle(self, settles: list[Settle], budget: float, marks: Marks) -> None:
        """One SETTLE_MANY call for ``settles`` and ``marks``."""
        assert self._script is not None
        keys: list[bytes] = []
        args: list[bytes | int | str] = [self._owner, len(settles)]
        for lease, name, value, ttl_ms in settles:
            keys += (lease, lease if name is None else name)
            args += (value, ttl_ms)
        for set_name, (mode, keep_ms, members) in marks.items():
            keys.append(set_name)
            args += (mode, keep_ms, len(members))
            for member, score in members.items():
                args += (score, member)
        call = await self._guard.call(
            self._script, keys, args, budget=budget, kind="write", commands=1
        )
        if call is None:
            self._hold(_tokens_of(settles))
            self.dropped_marks += sum(len(members) for _, _, members in marks.values())

    async def write(
        self,
        batch: Sequence[Write],
        budget: float,
        settles: Sequence[Settle] = (),
        marks: Marks | None = None,
    ) -> None:
        """One pipeline of ``SET name value PX ttl`` for ``batch``, a settlement script
        for each of ``settles`` and a ZADD and PEXPIRE per set of ``marks``, now."""
        marks = marks or {}
        replies = await self._guard.call(
            self._send,
            batch,
            settles,
            marks,
            budget=budget,
            kind="write",
            commands=len(batch) + len(settles) + 2 * len(marks),
        )
        if replies is None:
            self._hold([*batch, *_tokens_of(settles)])
            self.dropped_marks += sum(len(members) for _, _, members in marks.values())

    async def _send(
        self, batch: Sequence[Write], settles: Sequence[Settle], marks: Marks
    ) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        owner = self._owner
        for lease, name, value, ttl_ms in settles:
            if name is None:
                pipe.eval(SETTLE, 1, lease, owner, b"", 0)
            else:
                pipe.eval(SETTLE, 2, lease, name, owner, value, ttl_ms)
        for name, value, ttl_ms in batch:
            pipe.set(name, value, px=ttl_ms)
        for set_name, (mode, keep_ms, members) in marks.items():
            pipe.zadd(set_name, members, gt=mode == "GT", nx=mode == "NX")
            pipe.pexpire(set_name, keep_ms)
        return await pipe.execute()

    # -- writes held while Redis could not take them -------------------------------------

    def _hold(self, writes: Sequence[Write]) -> None:
        self.dropped += self._held.hold(writes)
        if self._guard.breaker.state is State.CLOSED:
            self._release_soon()  # a call failed with the breaker closed: try once more

    def _on_breaker(self, old: State, new: State) -> None:
        if new is State.CLOSED and len(self._held):
            self._release_soon()

    def _release_soon(self) -> None:
        if self._releasing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a breaker moved outside the loop (tests): the next call will
            return
        self._releasing = True
        loop.call_soon(self._release)

    def _release(self) -> None:
        """Make the held writes, each once: one that fails now is dropped."""
        self._releasing = False
        writes, expired = self._held.take()
        self.dropped += expired
        for start in range(0, len(writes), MAX_KEYS_PER_CALL):
            self._spawn(self._write_held(writes[start : start + MAX_KEYS_PER_CALL]))

    async def _write_held(self, writes: Sequence[Write]) -> None:
        replies = await self._guard.call(
            self._send_held, writes, budget=WRITE_TIMEOUT, kind="write", commands=len(writes)
        )
        if replies is None:
            self.dropped += len(writes)

    async def _send_held(self, writes: Sequence[Write]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for name, value, ttl_ms in writes:
            pipe.set(name, value, px=ttl_ms, nx=True)  # what is there now is newer
        return await pipe.execute()


def _tokens_of(settles: Iterable[Settle]) -> list[Write]:
    """The token writes of ``settles`` (a settlement may only let go of its lease)."""
    return [(name, value, ttl_ms) for _, name, value, ttl_ms in settles if name is not None]
