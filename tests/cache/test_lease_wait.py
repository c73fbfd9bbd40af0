"""Instances waiting on another instance's lease: they are served its token however long
its mint queues (within the lease), and when it lets go without a token or disappears,
exactly one of them signs in its place. A storm's warm request that meets a cold mint in
flight on another instance must not sign again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from signer.cache import AppPolicy, TokenIssuer
from signer.cache.backends.redis import RedisCache
from signer.core import HmacSecret, IssuedToken, V2Signer
from signer.engine import SignRequest

if TYPE_CHECKING:
    from tests.support import RedisServer

SDKAPPID = 1400000001
SIGNER = V2Signer(SDKAPPID, HmacSecret(b"lease-wait-tests"), key_version="1")
POLICY = AppPolicy(SDKAPPID, "1", min_remaining=3600, refresh_ahead=7200)


class SlowEngine:
    """Signs real tokens after ``delay`` seconds (a mint queued behind a storm), or fails."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail, self.signed = delay, fail, 0

    async def sign(self, request: SignRequest) -> IssuedToken:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("signing failed")
        self.signed += 1
        return SIGNER.sign(request.userid, request.expire)


@pytest.fixture
async def caches(redis_server: RedisServer) -> AsyncIterator[list[RedisCache]]:
    """Three instances' clients of one Redis."""
    made = [RedisCache.from_url(redis_server.url, timeout=0.5) for _ in range(3)]
    yield made
    for cache in made:
        await cache.close()


async def test_a_waiter_is_served_a_slow_holders_token_instead_of_signing(
    caches: list[RedisCache],
) -> None:
    """The holder's mint takes 0.8 s (queued in a storm); a request for the same userid on
    another instance 0.1 s later waits for it and gets that token: one signature.

    Catches: a wait shorter than the lease by default (it was 0.5 s: the warm phase of the
    2-instance storm signed up to 5.5 % of its userids again)."""
    holder, waiter = SlowEngine(delay=0.8), SlowEngine()
    first = TokenIssuer(holder, caches[0])  # type: ignore[arg-type]
    second = TokenIssuer(waiter, caches[1])  # type: ignore[arg-type]
    leading = asyncio.ensure_future(first.issue(POLICY, "storm-user", 86400))
    await asyncio.sleep(0.1)
    served = await second.issue(POLICY, "storm-user", 86400)
    led = await leading
    assert (holder.signed, waiter.signed) == (1, 0)
    assert served.usersig == led.usersig and served.cached


async def test_a_lease_let_go_without_a_token_passes_to_one_waiter(
    caches: list[RedisCache],
) -> None:
    """The holder's signing fails and it lets go of the lease with nothing stored; two
    other instances waiting on it: one signs, the other is served that token.

    Catches: waiters polling with a plain read (each signs at its own deadline: 2)."""
    failing = SlowEngine(delay=0.3, fail=True)
    engines = [SlowEngine(delay=0.2), SlowEngine(delay=0.2)]
    holder = TokenIssuer(failing, caches[0])  # type: ignore[arg-type]
    waiters = [
        TokenIssuer(engine, cache)  # type: ignore[arg-type]
        for engine, cache in zip(engines, caches[1:], strict=True)
    ]
    leading = asyncio.ensure_future(holder.issue(POLICY, "unlucky", 86400))
    await asyncio.sleep(0.05)
    served = await asyncio.gather(*(w.issue(POLICY, "unlucky", 86400) for w in waiters))
    with pytest.raises(RuntimeError):
        await leading
    assert sum(e.signed for e in engines) == 1
    assert served[0].usersig == served[1].usersig
    assert sorted(s.cached for s in served) == [False, True]


async def test_a_lease_that_runs_out_passes_to_a_waiter_which_stores_its_token(
    caches: list[RedisCache],
) -> None:
    """A holder that took a 0.2 s lease and vanished (no release): a waiter takes the lease
    over once it runs out, signs, and stores the token for the next request.

    Catches: a waiter that signs without the lease (its token not stored for others)."""
    policy = AppPolicy(SDKAPPID, "1", 3600, 7200, lease_seconds=0.2, lease_wait=5.0)
    engine = SlowEngine()
    issuer = TokenIssuer(engine, caches[1])  # type: ignore[arg-type]
    gone = TokenIssuer(SlowEngine(), caches[0])  # type: ignore[arg-type]
    key = gone._key(policy, "orphan", 86400, None)
    assert (await caches[0].acquire_lease(key, policy.lease_seconds))[0] is True
    issued = await asyncio.wait_for(issuer.issue(policy, "orphan", 86400), 2.0)
    assert engine.signed == 1 and not issued.cached
    await caches[1].flush()
    again = await TokenIssuer(SlowEngine(), caches[2]).issue(policy, "orphan", 86400)  # type: ignore[arg-type]
    assert again.cached and again.usersig == issued.usersig
