"""A login storm costs Redis a fraction of a round trip per token: the misses of one
event-loop iteration take their leases in one pipeline, and store their tokens and let go
of their leases in another, with every guarantee of the lease kept."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import redis

from signer.cache import AppPolicy, TokenIssuer
from signer.cache.backends.redis import RedisCache
from signer.cache.base import CachedToken, CacheKey
from signer.core import HmacSecret, IssuedToken, V2Signer, verify
from signer.engine import SignRequest

if TYPE_CHECKING:
    from tests.support import RedisServer

SDKAPPID = 1400000001
SECRET = HmacSecret(b"coalescing-tests")
POLICY = AppPolicy(SDKAPPID, "1", min_remaining=3600, refresh_ahead=7200)
STORM = 64


class Engine:
    """Signs real v2 tokens, yielding once like a real engine; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.signer = V2Signer(SDKAPPID, SECRET, key_version="1")
        self.signed = 0
        self.fail = False

    async def sign(self, request: SignRequest) -> IssuedToken:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("signing failed")
        self.signed += 1
        return self.signer.sign(request.userid, request.expire)

    async def sign_many(self, requests: list[SignRequest]) -> list[IssuedToken]:
        return [await self.sign(r) for r in requests]


def names(server: RedisServer) -> list[bytes]:
    return sorted(redis.Redis(port=server.port).keys("*"))


async def test_a_storm_of_misses_costs_a_fraction_of_a_round_trip_per_token(
    redis_cache: RedisCache, redis_server: RedisServer
) -> None:
    """64 cold mints at once: each token is signed once and stored, no lease is left
    behind, and Redis saw one read, one lease and one write round trip in all (at most
    0.5 a mint, the issue's target, with room to spare).

    Catches: a lease or a write per key (64 round trips of that kind), a lease not let go
    (a ``signer:lease:`` name left in Redis), a token not stored."""
    engine = Engine()
    issuer = TokenIssuer(engine, redis_cache)  # type: ignore[arg-type]
    userids = [f"storm{n}" for n in range(STORM)]
    issued = await asyncio.gather(*(issuer.issue(POLICY, u, 86400) for u in userids))
    await redis_cache.flush()
    assert [i.userid for i in issued] == userids and engine.signed == STORM
    for token in issued:
        verify(token.usersig, userid=token.userid, sdkappid=SDKAPPID, key=SECRET)
    stored = names(redis_server)
    assert len(stored) == STORM and not [n for n in stored if n.startswith(b"signer:lease:")]
    trips = redis_cache.guard.round_trips
    # One script call reads them all and takes the leases of the missing, one stores the
    # tokens and lets the leases go (one server: all keys may meet in one script).
    assert (trips["read"], trips["lease"], trips["write"]) == (1, 0, 1), dict(trips)
    assert sum(trips.values()) / STORM <= 0.5
    assert (redis_cache.guard.commands["read"], redis_cache.guard.commands["write"]) == (1, 1)


async def test_a_second_instance_waits_for_the_first_ones_token(
    redis_server: RedisServer, redis_cache: RedisCache
) -> None:
    """Two instances miss the same userid at once: one signs, the other finds its lease
    and is served the token it stores (the write that lets go of the lease).

    Catches: a lease let go before its token is stored (the waiter would find neither
    and sign a second time), or the token never stored."""
    other = RedisCache.from_url(redis_server.url, timeout=0.05)
    try:
        engines = Engine(), Engine()
        first = TokenIssuer(engines[0], redis_cache)  # type: ignore[arg-type]
        second = TokenIssuer(engines[1], other)  # type: ignore[arg-type]
        a, b = await asyncio.gather(
            first.issue(POLICY, "both", 86400), second.issue(POLICY, "both", 86400)
        )
        assert engines[0].signed + engines[1].signed == 1
        assert a.usersig == b.usersig and [a.cached, b.cached].count(True) == 1
    finally:
        await other.close()


async def test_letting_go_ends_only_our_own_lease(
    redis_server: RedisServer, redis_cache: RedisCache
) -> None:
    """A lease that expired and was taken by another instance is not ended by the first
    holder's late write, which still stores its token.

    Catches: an unconditional DEL of the lease (the other instance's signing would lose
    its protection, and a third would sign too)."""
    other = RedisCache.from_url(redis_server.url, timeout=0.05)
    try:
        key = CacheKey(SDKAPPID, "1", 86400, "", "late")
        assert (await redis_cache.acquire_lease(key, 0.05))[0] is True
        await asyncio.sleep(0.1)  # the lease's own PX expiry: Redis's clock, not ours
        assert (await other.acquire_lease(key, 30))[0] is True
        token = CachedToken.of(V2Signer(SDKAPPID, SECRET, key_version="1").sign("late"))
        await redis_cache.release_lease(key, (token, 600))
        await redis_cache.flush()
        assert (await other.acquire_lease(key, 30))[0] is False  # still the other's
        assert (await redis_cache.get_many([key]))[0] == token
    finally:
        await other.close()


async def test_a_failed_signing_lets_go_of_the_lease_and_stores_nothing(
    redis_server: RedisServer, redis_cache: RedisCache
) -> None:
    """Catches: a lease held after its signing failed (every other instance would wait
    out lease_wait for a token that never comes)."""
    engine = Engine()
    engine.fail = True
    issuer = TokenIssuer(engine, redis_cache)  # type: ignore[arg-type]
    try:
        await issuer.issue(POLICY, "fails", 86400)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the engine's error did not reach the caller")
    await redis_cache.flush()
    assert names(redis_server) == []


async def test_concurrent_misses_in_one_process_sign_once_and_leave_no_lease(
    redis_server: RedisServer, redis_cache: RedisCache
) -> None:
    """Ten requests for one missing userid at once: the reads travel together, one of
    them takes the lease, one signature serves all ten, and no lease is left behind.

    Catches: a read that took the lease while another request of this process leads the
    signing, its lease never let go (other instances would wait out lease_wait for it)."""
    engine = Engine()
    issuer = TokenIssuer(engine, redis_cache)  # type: ignore[arg-type]
    issued = await asyncio.gather(*(issuer.issue(POLICY, "same", 86400) for _ in range(10)))
    await redis_cache.flush()
    assert engine.signed == 1 and len({i.usersig for i in issued}) == 1
    assert [n for n in names(redis_server) if n.startswith(b"signer:lease:")] == []
