"""Keep-warm's state in Redis: claiming the token variants due for a re-sign, one instance
at a time, and counting them.

Two sorted sets per app share the hash tag ``{kw:<sdkappid>}`` (names in
:mod:`~signer.cache.backends.layout`), so one script reads and changes both, on a single
server and in a cluster alike: ``due`` (``<expire>:<userid>`` by the time its re-sign is
due) and ``seen`` (``<userid>`` by the time the user last asked). The claim follows what
Redis job queues do with a sorted set of scheduled work (arq keeps deferred jobs scored by
their due time and takes the ready ones by score): pick the members due by now, in due
order, bounded; here the claim is made in the same script by moving each picked member's
score a claim period ahead, so no other instance sees it due meanwhile, and the store of
the re-signed token sets its next due time. An instance that dies holding claims loses
nothing: its members are due again when the period ends. A member whose user has not
asked since the idle horizon (or was logged out: DELETE removes the user from ``seen``)
leaves both sets instead of being claimed.

A logout must not be undone by a mark that was on its way: a request served just before a
DELETE records in ``seen`` that its user asked, and that write can land after the DELETE
took the user out. So a claim also reads the claimed users' revocation markers, and a user
who last asked at or before their marker (within a few seconds of clock skew between
instances) leaves both sets too, unless they asked again since.

On a cluster the pair is sharded by userid (:meth:`KeyLayout.warm_shard`): a claim visits
the shards one script each, from a shard that turns with every claim, so none waits behind
another when the rate cap stops a pass early.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from redis.asyncio import Redis, RedisCluster

from signer.cache.backends.guard import Guard
from signer.cache.backends.layout import KeyLayout

# KEYS: the due set, the seen set. ARGV: now (ms), the idle horizon (ms: a user last seen
# before it falls out), the claim's end (ms), the most members to claim. The reply: the
# count of members that fell out, then (member, due score, seen score) per member claimed.
CLAIM = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[4]))
local out = {0}
for i = 1, #due, 2 do
  local member = due[i]
  local sep = string.find(member, ':', 1, true)
  local userid = sep and string.sub(member, sep + 1)
  local seen = userid and redis.call('zscore', KEYS[2], userid)
  if seen and tonumber(seen) >= tonumber(ARGV[2]) then
    redis.call('zadd', KEYS[1], ARGV[3], member)
    out[#out + 1] = member
    out[#out + 1] = due[i + 1]
    out[#out + 1] = seen
  else
    redis.call('zrem', KEYS[1], member)
    if seen then redis.call('zrem', KEYS[2], userid) end
    out[1] = out[1] + 1
  end
end
return out
"""

# KEYS: the due set, the seen set. ARGV: (member, userid, latest seen score to retire) per
# member: each leaves the due set, and its user the seen set, unless the user asked since.
# The reply: how many members left.
RETIRE = """
local retired = 0
for i = 1, #ARGV, 3 do
  local seen = redis.call('zscore', KEYS[2], ARGV[i + 1])
  if not seen or tonumber(seen) <= tonumber(ARGV[i + 2]) then
    retired = retired + redis.call('zrem', KEYS[1], ARGV[i])
    if seen then redis.call('zrem', KEYS[2], ARGV[i + 1]) end
  end
end
return retired
"""

CLAIM_BUDGET = 0.5  # seconds: background work, but a stuck claim must not hold the loop


class Due(NamedTuple):
    """A token variant claimed for a re-sign: its user and lifetime, when it was due, and
    when its user last asked."""

    userid: str
    expire: int
    due_ms: int
    seen_ms: int


class Claimed(NamedTuple):
    due: list[Due]
    fell_out: int
    """Members that left instead: their user idle past the horizon, or logged out."""


MGet = Callable[[list[bytes]], Awaitable[list[Any]]]


class WarmState:
    """The claim and the counts of keep-warm's sets, through the backend's guard; ``mget``
    reads names of any slot (the backend's MGET, split per slot on a cluster)."""

    def __init__(
        self, client: Redis | RedisCluster, layout: KeyLayout, guard: Guard, mget: MGet
    ) -> None:
        self._client = client
        self._layout = layout
        self._guard = guard
        self._mget = mget
        self._claim = client.register_script(CLAIM)
        self._retire = client.register_script(RETIRE)
        self._turn = 0

    async def claim(
        self,
        sdkappid: int,
        now_ms: int,
        idle_before_ms: int,
        until_ms: int,
        limit: int,
        skew_ms: int,
    ) -> Claimed | None:
        """Claim up to ``limit`` members of app ``sdkappid`` due by ``now_ms`` until
        ``until_ms``, leaving out (and retiring) those whose user last asked no later
        than ``skew_ms`` after their revocation marker; None if Redis did not answer (the
        breaker counts it): what the shards visited before gave is then lost for this
        pass and due again at its end."""
        shards = self._layout.warm_shards
        self._turn = (self._turn + 1) % shards
        due: list[Due] = []
        fell_out = 0
        for step in range(shards):
            if len(due) >= limit:
                break
            shard = (self._turn + step) % shards
            got = await self._claim_shard(
                sdkappid, shard, now_ms, idle_before_ms, until_ms, limit - len(due)
            )
            if got is None:
                return None
            due += got.due
            fell_out += got.fell_out
        revoked = await self._revoked(sdkappid, due, skew_ms)
        if revoked is None:
            return None
        if revoked:
            retired = await self._retire_revoked(sdkappid, revoked)
            if retired is None:
                return None
            fell_out += retired
            due = [item for item in due if item not in revoked]
        return Claimed(due, fell_out)

    async def _revoked(self, sdkappid: int, due: list[Due], skew_ms: int) -> set[Due] | None:
        """The claimed ``due`` whose user last asked at or before their revocation marker
        (+ ``skew_ms``): logged out since, their last ask's mark landing after the DELETE."""
        if not due:
            return set()
        users = list(dict.fromkeys(item.userid for item in due))
        names = [self._layout.revocation(sdkappid, userid) for userid in users]
        found = await self._guard.call(
            self._mget, names, budget=max(self._guard.timeout, CLAIM_BUDGET), kind="warm"
        )
        if found is None:
            return None
        marker = {
            userid: int(value)
            for userid, value in zip(users, found, strict=True)
            if isinstance(value, bytes) and value.isdigit()
        }
        return {
            item
            for item in due
            if item.userid in marker and item.seen_ms <= marker[item.userid] + skew_ms
        }

    async def _retire_revoked(self, sdkappid: int, revoked: set[Due]) -> int | None:
        """Take the ``revoked`` members out of keep-warm's sets, shard by shard, unless
        their user asked again since (they are then only skipped by this claim); how many
        left, None if Redis did not answer."""
        retired = 0
        by_shard: dict[int, list[Due]] = {}
        for item in revoked:
            by_shard.setdefault(self._layout.warm_shard(item.userid), []).append(item)
        for shard, items in by_shard.items():
            keys = [self._layout.warm_due(sdkappid, shard), self._layout.warm_seen(sdkappid, shard)]
            args: list[bytes | int] = []
            for item in items:
                user = item.userid.encode("utf-8", "surrogatepass")
                args += [member(item.expire, item.userid), user, item.seen_ms]
            reply = await self._guard.call(
                self._retire,
                keys,
                args,
                budget=max(self._guard.timeout, CLAIM_BUDGET),
                kind="warm",
            )
            if reply is None:
                return None
            retired += int(reply)
        return retired

    async def _claim_shard(
        self, sdkappid: int, shard: int, now_ms: int, idle_before_ms: int, until_ms: int, limit: int
    ) -> Claimed | None:
        keys = [self._layout.warm_due(sdkappid, shard), self._layout.warm_seen(sdkappid, shard)]
        reply: Any = await self._guard.call(
            self._claim,
            keys,
            [now_ms, idle_before_ms, until_ms, limit],
            budget=max(self._guard.timeout, CLAIM_BUDGET),
            kind="warm",
        )
        if reply is None:
            return None
        due = []
        for index in range(1, len(reply) - 2, 3):
            expire, _, userid = reply[index].decode("utf-8", "surrogatepass").partition(":")
            if expire.isdigit() and userid:
                due_ms, seen_ms = (int(float(value)) for value in reply[index + 1 : index + 3])
                due.append(Due(userid, int(expire), due_ms, seen_ms))
        return Claimed(due, int(reply[0]))

    async def count(self, sdkappid: int) -> int | None:
        """Token variants tracked for app ``sdkappid`` (ZCARD of its due sets)."""
        total = 0
        for shard in range(self._layout.warm_shards):
            name = self._layout.warm_due(sdkappid, shard)
            found = await self._guard.call(self._client.zcard, name, kind="warm")
            if found is None:
                return None
            total += int(found)
        return total


def member(expire: int, userid: str) -> bytes:
    """A due set's member: the variant's lifetime, then the userid (which may hold ":")."""
    return f"{expire}:{userid}".encode("utf-8", "surrogatepass")
