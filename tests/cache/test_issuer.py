"""Cache-aside issuing with a controllable clock: the min_remaining guarantee, refresh-ahead,
single-flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from signer.cache import AppPolicy, MemoryCache, TokenIssuer
from signer.core import HmacSecret, IssuedToken, V2Signer, verify
from signer.engine import SignRequest

SDKAPPID = 1400000001
SECRET = HmacSecret(b"issuer-tests")
MIN_REMAINING = 3600
POLICY = AppPolicy(SDKAPPID, "1", MIN_REMAINING, refresh_ahead=7200, refresh_jitter=0.2)


class Clock:
    def __init__(self, now: float = 1_700_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingEngine:
    """Signs real v2 tokens at the clock's time, counting signatures."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.signed = 0
        self.signer = V2Signer(SDKAPPID, SECRET, key_version="1")

    async def sign(self, request: SignRequest) -> IssuedToken:
        self.signed += 1
        await asyncio.sleep(0)  # a real engine always yields
        return self.signer.sign(request.userid, request.expire, request.userbuf, int(self.clock()))

    async def sign_many(self, requests: Sequence[SignRequest]) -> list[IssuedToken]:
        return [await self.sign(r) for r in requests]


def make(clock: Clock, rng: float = 0.5) -> tuple[TokenIssuer, CountingEngine]:
    engine = CountingEngine(clock)
    issuer = TokenIssuer(engine, MemoryCache(clock=clock), clock=clock, rng=lambda: rng)  # type: ignore[arg-type]
    return issuer, engine


steps = st.lists(
    st.tuples(
        st.integers(0, 3 * 86400),
        st.sampled_from(["a", "b", "c"]),
        st.integers(MIN_REMAINING + 1, 4 * 86400),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, rng=st.floats(0, 1))
def test_no_response_ever_has_less_than_min_remaining(
    steps: list[tuple[int, str, int]], rng: float
) -> None:
    """Whatever the timing, every token served has at least min_remaining seconds to live."""

    async def run() -> None:
        clock = Clock()
        issuer, _ = make(clock, rng)
        for advance, userid, expire in steps:
            clock.now += advance
            issued = await issuer.issue(POLICY, userid, expire)
            for _ in range(3):
                await asyncio.sleep(0)  # let background refreshes land
            assert issued.expires_at - clock.now >= MIN_REMAINING
            verify(issued.usersig, userid=userid, sdkappid=SDKAPPID, key=SECRET, now=int(clock.now))

    asyncio.run(run())


async def test_refresh_ahead_serves_cached_and_signs_in_background() -> None:
    clock = Clock()
    issuer, engine = make(clock, rng=0.0)
    first = await issuer.issue(POLICY, "u", 86400)
    clock.now += 86400 - 7000  # 7000 s left: past refresh_ahead (7200), above min_remaining
    again = await issuer.issue(POLICY, "u", 86400)
    assert again.cached and again.usersig == first.usersig  # served at once
    await asyncio.sleep(0.01)
    assert engine.signed == 2 and issuer.refreshes == 1
    fresh = await issuer.issue(POLICY, "u", 86400)
    assert fresh.cached and fresh.issued_at == int(clock.now)


async def test_jitter_spreads_the_refresh_threshold() -> None:
    """With 20 % jitter, a lookup at 6000 s left refreshes only if its draw allows."""
    for rng, expect_refresh in ((0.0, True), (0.9, False)):
        clock = Clock()
        issuer, _ = make(clock, rng=rng)
        await issuer.issue(POLICY, "u", 86400)
        clock.now += 86400 - 6000  # threshold = 7200 * (1 - 0.2 * rng)
        await issuer.issue(POLICY, "u", 86400)
        assert (issuer.refreshes == 1) is expect_refresh


async def test_concurrent_misses_share_one_signature() -> None:
    clock = Clock()
    issuer, engine = make(clock)
    results = await asyncio.gather(*(issuer.issue(POLICY, "cold", 86400) for _ in range(500)))
    assert engine.signed == 1
    assert len({r.usersig for r in results}) == 1


async def test_stale_entry_is_never_served() -> None:
    clock = Clock()
    issuer, engine = make(clock)
    first = await issuer.issue(POLICY, "u", 7200)
    clock.now += 7200 - MIN_REMAINING + 1  # one second under min_remaining left
    second = await issuer.issue(POLICY, "u", 7200)
    assert second.usersig != first.usersig and not second.cached and engine.signed == 2
