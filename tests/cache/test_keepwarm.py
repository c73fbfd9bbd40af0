"""Keep-warm against a real redis-server, with a controllable clock: users who asked stay
warm for keep_warm_days, each variant is re-signed once across instances, logouts are
never undone, idle users fall out, and a Redis restart pauses and resumes the loop.

Redis keeps entries on real time while the clock jumps ahead (as in test_issuer.py), so
an entry still in Redis is served only if the issuer's read-time check says it has
min_remaining left: the checks below read through that check."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from signer.cache import AppPolicy, TokenIssuer
from signer.cache.backends.redis import RedisCache
from signer.cache.breaker import CircuitBreaker
from signer.cache.keepwarm import KeepWarm, Pace
from signer.cache.warming import warm_many
from signer.core import HmacSecret, IssuedToken, SignerError, V2Signer, verify
from signer.engine import SignRequest
from tests.support import RedisServer

SDKAPPID = 1400000001
SECRET = HmacSecret(b"keep-warm-tests")
START = 1_700_000_000
DAY = 86400
EXPIRE = DAY
MIN_REMAINING = 3600
POLICY = AppPolicy(
    SDKAPPID, "1", MIN_REMAINING, refresh_ahead=7200, keep_warm=3 * DAY, warm_spread=0.25
)
STEP = 1800  # the clock's step between two passes: under the window's 10 % margin (2070 s)


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Engine:
    """Signs real v2 tokens as of the request's issued_at (else the clock), recording
    every signature by userid; background requests can be held at a gate."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.signer = V2Signer(SDKAPPID, SECRET, key_version="1")
        self.signed: dict[str, list[int]] = defaultdict(list)
        self.background = 0
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    def _sign(self, request: SignRequest) -> IssuedToken:
        issued_at = request.issued_at if request.issued_at is not None else int(self.clock())
        self.signed[request.userid].append(issued_at)
        return self.signer.sign(request.userid, request.expire, None, issued_at)

    async def sign(self, request: SignRequest) -> IssuedToken:
        await asyncio.sleep(0)
        return self._sign(request)

    async def sign_many(
        self, requests: Sequence[SignRequest], background: bool = False
    ) -> list[IssuedToken | SignerError]:
        if background:
            self.background += len(requests)
            if self.gate is not None:
                self.waiting.set()
                await self.gate.wait()
        await asyncio.sleep(0)
        return [self._sign(r) for r in requests]

    def total(self) -> int:
        return sum(len(v) for v in self.signed.values())


@dataclass
class Instance:
    cache: RedisCache
    engine: Engine
    issuer: TokenIssuer
    warm: KeepWarm

    async def tick(self, limit: int = 512) -> int:
        claimed = await self.warm.tick(limit, count=True)
        await self.cache.flush()
        return claimed

    async def cached(self, userid: str) -> bool:
        """Whether a request now would be a hit (read through the issuer's check)."""
        key = self.issuer.key(POLICY, userid, EXPIRE, None)
        (entry,) = await self.cache.get_many([key])
        return self.issuer.verdict(entry, key, POLICY) == "hit"


def instance(url: str, clock: Clock, rng: float = 0.5, failures: int = 2) -> Instance:
    """An instance on ``url`` whose breaker opens after ``failures`` failed calls."""
    cache = RedisCache.from_url(
        url, timeout=0.2, breaker=CircuitBreaker(failure_threshold=failures, reset_after=0.3)
    )
    cache.clock = clock
    engine = Engine(clock)
    issuer = TokenIssuer(engine, cache, clock=clock, rng=lambda: rng)  # type: ignore[arg-type]
    warm = KeepWarm(
        lambda: issuer, cache.warm, lambda: [POLICY], lambda: Pace(claim=60), cache.healthy
    )
    return Instance(cache, engine, issuer, warm)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Instance, Instance, Clock]]:
    clock = Clock()
    first, second = instance(redis_server.url, clock, 0.3), instance(redis_server.url, clock, 0.7)
    yield first, second, clock
    await first.cache.close()
    await second.cache.close()


async def ask(node: Instance, userid: str) -> bool:
    """A request for ``userid``'s token; checks its life left, returns ``cached``."""
    issued = await node.issuer.issue(POLICY, userid, EXPIRE)
    assert issued.expires_at - node.issuer.clock() >= MIN_REMAINING
    verify(
        issued.usersig, userid=userid, sdkappid=SDKAPPID, key=SECRET, now=int(node.issuer.clock())
    )
    await node.cache.flush()
    return issued.cached


async def stays_warm(node: Instance, clock: Clock, userid: str, until: float) -> None:
    """Pass after pass, every STEP seconds until ``until``: ``userid``'s token is warm
    after each (a request then would be a hit)."""
    while clock.now + STEP < until:
        clock.now += STEP
        await node.tick()
        assert await node.cached(userid), f"cold at +{clock.now - START:.0f} s"


async def asks_again_from_the_held_token_and_stays_warm(
    node: Instance, clock: Clock, userid: str
) -> None:
    """Once the token held for ``userid`` is written, a request a minute later is a hit,
    and the user stays warm for two days without asking again."""
    for _ in range(150):
        if node.cache.held_writes == 0 and await node.cached(userid):
            break
        await asyncio.sleep(0.02)
    clock.now += 60
    assert await ask(node, userid)
    await stays_warm(node, clock, userid, START + 2 * DAY)


class TestKeptWarm:
    async def test_a_user_who_never_asks_again_stays_warm_for_n_days(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A user issued one token and never asking again has, at every half hour of the
        next three days, a cached token with min_remaining left; a request then is a hit
        and signs nothing; the token was re-signed about once a day, not on every pass.

        Catches: no due time recorded with the stored token; the claim never picking
        what is due; a re-sign not stored."""
        node, _, clock = pair
        assert not await ask(node, "alice")
        await stays_warm(node, clock, "alice", START + POLICY.keep_warm)
        before = node.engine.total()
        assert await ask(node, "alice")  # cached: true
        assert node.engine.total() == before  # no signature on its path
        resigned = node.warm.stats.resigned[SDKAPPID]
        assert 3 <= resigned <= 4 and node.warm.stats.late[SDKAPPID] == 0
        assert node.engine.background == resigned

    async def test_asking_again_restarts_the_horizon(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A user who asks again (a hit) is kept warm for N days from then, not from
        their first token: the hit recorded that they asked.

        Catches: hits not recording the user as seen (they would fall out after N days
        of daily logins served from cache)."""
        node, _, clock = pair
        await ask(node, "bob")
        for _ in range(2 * DAY // STEP):
            clock.now += STEP
            await node.tick()
        assert await ask(node, "bob")  # a hit, two days in
        for _ in range(2 * DAY // STEP):  # to four days after the first token
            clock.now += STEP
            await node.tick()
            assert await node.cached("bob")
        assert node.warm.stats.fell_out[SDKAPPID] == 0

    async def test_idle_beyond_n_days_falls_out(
        self, pair: tuple[Instance, Instance, Clock], redis_server: RedisServer
    ) -> None:
        """A user who has not asked for N days is not re-signed again: their variant and
        their record leave Redis at its next due time, and the token then goes cold.

        Catches: the claim's idle check skipped (it would re-sign for ever)."""
        node, _, clock = pair
        await ask(node, "carol")
        while clock.now < START + POLICY.keep_warm + 2 * DAY:
            clock.now += STEP
            await node.tick()
        assert node.warm.stats.fell_out[SDKAPPID] == 1
        assert redis_server.cli("ZCARD", node.cache.layout.warm_due(SDKAPPID).decode()) == "0"
        assert redis_server.cli("ZCARD", node.cache.layout.warm_seen(SDKAPPID).decode()) == "0"
        assert not await node.cached("carol")
        # every re-sign happened within the horizon
        last = max(node.engine.signed["carol"])
        assert last <= START + POLICY.keep_warm


class TestSpread:
    async def test_due_times_of_tokens_issued_together_spread_over_the_window(
        self, redis_server: RedisServer
    ) -> None:
        """1,000 tokens issued at one moment are due for their re-signs all over the last
        quarter of their usable life (warm_spread 0.25; the last tenth of it kept as a
        margin), about evenly: tomorrow's re-signs of a morning's logins are spread over
        hours, not bunched.

        Catches: a due time without its jitter (all 1,000 in one instant)."""
        clock = Clock()
        node = instance(redis_server.url, clock)
        node.issuer = TokenIssuer(
            node.engine,  # type: ignore[arg-type]
            node.cache,
            clock=clock,
            rng=random.Random(15).random,
        )
        try:
            users = [f"spread{i}" for i in range(1000)]
            counts = await warm_many(node.issuer, POLICY, users, EXPIRE)
            assert counts.signed == 1000
            await node.cache.flush()
            name = node.cache.layout.warm_due(SDKAPPID)
            due = [
                score / 1000
                for _, score in await node.cache.client.zrange(name, 0, -1, withscores=True)
            ]
            deadline = START + EXPIRE - MIN_REMAINING
            lead = POLICY.warm_lead(EXPIRE)
            low, high = deadline - lead, deadline - 0.1 * lead
            assert len(due) == 1000 and all(low - 1 <= d <= high + 1 for d in due)
            bins = [0] * 10
            for d in due:
                bins[min(9, int((d - low) / (high - low) * 10))] += 1
            assert all(50 <= n <= 150 for n in bins), bins
        finally:
            await node.cache.close()


class TestTwoInstances:
    async def test_each_variant_is_re_signed_once(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """Two instances sharing Redis, passing at the same moments with small claims,
        share the work and never sign one user twice in one re-sign window.

        Catches: the claim not moving a claimed member's score and the re-sign not
        taking the stampede lease (either alone still holds the line)."""
        first, second, clock = pair
        users = [f"user{i}" for i in range(40)]
        for userid in users:
            await ask(first, userid)
        while clock.now + STEP < START + POLICY.keep_warm:
            clock.now += STEP
            await asyncio.gather(first.tick(limit=7), second.tick(limit=7))
            for userid in users[::5]:
                assert await first.cached(userid)
        for userid in users:
            signed = sorted(first.engine.signed[userid] + second.engine.signed[userid])
            gaps = [b - a for a, b in itertools.pairwise(signed)]
            assert gaps and min(gaps) > DAY / 2, (userid, gaps)
        assert first.warm.stats.resigned[SDKAPPID] > 0
        assert second.warm.stats.resigned[SDKAPPID] > 0


class TestLogout:
    async def test_a_deleted_user_is_not_re_signed(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """After a DELETE (logout, ban) the user is never re-signed; another user is.

        Catches: DELETE not taking the user out of keep-warm's record."""
        node, _, clock = pair
        await ask(node, "dave")
        await ask(node, "erin")
        clock.now += 60
        await node.cache.delete_user(SDKAPPID, "dave")
        while clock.now + STEP < START + 2 * DAY:
            clock.now += STEP
            await node.tick()
        assert len(node.engine.signed["dave"]) == 1
        assert len(node.engine.signed["erin"]) >= 2
        assert not await node.cached("dave") and await node.cached("erin")

    async def test_a_delete_during_a_re_sign_is_not_undone(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A re-sign claimed before a DELETE and stored after it (the signature waited in
        the engine meanwhile, seconds later) is not served: the next request signs anew.

        Catches: the re-sign signing as of when it signs rather than as of its claim
        (its token would postdate the revocation marker and be served)."""
        node, _, clock = pair
        await ask(node, "frank")
        key = node.issuer.key(POLICY, "frank", EXPIRE, None)
        (entry,) = await node.cache.get_many([key])
        assert entry is not None
        clock.now = entry.expires_at - MIN_REMAINING - 60  # inside its re-sign window
        node.engine.gate = asyncio.Event()
        task = asyncio.ensure_future(node.tick())
        await asyncio.wait_for(node.engine.waiting.wait(), 5)
        clock.now += 2
        await node.cache.delete_user(SDKAPPID, "frank")
        clock.now += 2  # the signature is made after the logout
        node.engine.gate.set()
        await task
        assert node.warm.stats.resigned[SDKAPPID] == 1
        (after,) = await node.cache.get_many([key])
        assert after is None  # stored, but retired by the marker
        assert not await ask(node, "frank")

    async def test_a_seen_mark_landing_after_the_delete_does_not_bring_the_user_back(
        self, pair: tuple[Instance, Instance, Clock], redis_server: RedisServer
    ) -> None:
        """A request served just before a DELETE records that its user asked; that write
        lands after the DELETE took the user out. The user is still never re-signed, and
        leaves keep-warm's sets at their next claim.

        Catches: a claim trusting the seen set alone (the late mark would have keep-warm
        sign the banned user a fresh token, dated after their revocation, every day)."""
        first, second, clock = pair
        await ask(first, "gina")
        clock.now += 60
        key = second.issuer.key(POLICY, "gina", EXPIRE, None)
        (entry,) = await second.cache.get_many([key])
        assert entry is not None
        late = second.issuer.marks(POLICY, key, entry, stored=False, asked=True)  # a hit
        assert late and late[0].seen_ms is not None
        clock.now += 1
        await first.cache.delete_user(SDKAPPID, "gina")
        second.cache.track(late)
        await second.cache.flush()
        while clock.now + STEP < START + 2 * DAY:
            clock.now += STEP
            await first.tick()
        assert len(first.engine.signed["gina"]) == 1
        assert not await first.cached("gina")
        assert first.warm.stats.fell_out[SDKAPPID] == 1
        for name in (first.cache.layout.warm_due(SDKAPPID), first.cache.layout.warm_seen(SDKAPPID)):
            assert redis_server.cli("ZCARD", name.decode()) == "0"

    async def test_a_user_who_logs_in_again_after_a_logout_is_kept_warm(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """Logged out, then logged in again a minute later: the new token is kept warm.

        Catches: the process's memory of users it recorded within the hour sparing the
        new login's record (the DELETE had removed the old one: the user would fall out
        at their next due time and tomorrow's login would be cold)."""
        node, _, clock = pair
        await ask(node, "hank")
        clock.now += 60
        await node.cache.delete_user(SDKAPPID, "hank")
        clock.now += 60
        assert not await ask(node, "hank")  # the old token is retired: a new one
        await stays_warm(node, clock, "hank", START + 2 * DAY)
        assert node.warm.stats.fell_out[SDKAPPID] == 0


class TestUserbuf:
    async def test_a_userbuf_token_is_cached_but_not_kept_warm(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A token with a userbuf (room privileges) is served from cache, but keep-warm
        does not track it: the cache keeps only the userbuf's digest, so a re-sign could
        only sign a token without it.

        Catches: marks recorded for userbuf variants (the claim would then re-sign them)."""
        node, _, clock = pair
        assert not (await node.issuer.issue(POLICY, "holly", EXPIRE, b"room-7")).cached
        await node.cache.flush()
        assert (await node.issuer.issue(POLICY, "holly", EXPIRE, b"room-7")).cached
        assert await node.cache.warm.count(SDKAPPID) == 0
        while clock.now + STEP < START + DAY:
            clock.now += STEP
            await node.tick()
        assert len(node.engine.signed["holly"]) == 1
        assert node.warm.stats.resigned[SDKAPPID] == 0


class TestWarmOnDemand:
    async def test_a_warm_racing_a_live_miss_signs_the_user_once(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A warm signing a userid (its signature held in the background queue) while a
        live request for it reaches another instance: the request waits on the warm's
        lease and is served the warm's token; one signature in all.

        Catches: the warm signing without the stampede lease (the live miss signs too)."""
        first, second, _ = pair
        first.engine.gate = asyncio.Event()
        warming = asyncio.ensure_future(warm_many(first.issuer, POLICY, ["zoe"], EXPIRE))
        await asyncio.wait_for(first.engine.waiting.wait(), 5)
        live = asyncio.ensure_future(second.issuer.issue(POLICY, "zoe", EXPIRE))
        await asyncio.sleep(0.1)
        first.engine.gate.set()
        counts = await warming
        issued = await asyncio.wait_for(live, 5)
        assert (counts.signed, counts.already_warm) == (1, 0)
        assert issued.cached
        assert first.engine.total() + second.engine.total() == 1

    async def test_a_userid_being_signed_elsewhere_counts_as_already_warm(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A userid whose lease another instance holds is not signed by the warm.

        Catches: the warm ignoring a lease it did not win."""
        first, second, _ = pair
        key = first.issuer.key(POLICY, "yann", EXPIRE, None)
        won, _ = await first.cache.acquire_lease(key, 2)
        assert won
        counts = await warm_many(second.issuer, POLICY, ["yann", "zack"], EXPIRE)
        assert (counts.signed, counts.already_warm, counts.refused) == (1, 1, [])
        assert list(second.engine.signed) == ["zack"]


class TestPace:
    async def test_the_loop_re_signs_no_faster_than_its_rate(
        self, redis_server: RedisServer
    ) -> None:
        """The running loop (rate 40 a second, passes every 0.05 s) facing 300 variants
        due at once re-signs at most what its token bucket allows over the time it ran
        (40 a second plus a burst of two intervals' worth), and does re-sign.

        Catches: the rate cap not applied (the first pass would claim all 300)."""
        clock = Clock()
        node = instance(redis_server.url, clock)
        rate, interval = 40.0, 0.05
        node.warm = KeepWarm(
            lambda: node.issuer,
            node.cache.warm,
            lambda: [POLICY],
            lambda: Pace(rate=rate, claim=60, interval=interval),
            node.cache.healthy,
        )
        try:
            users = [f"paced{i}" for i in range(300)]
            for userid in users:
                await node.issuer.issue(POLICY, userid, EXPIRE)
            await node.cache.flush()
            clock.now += EXPIRE - MIN_REMAINING - 60  # every variant is due
            loop = asyncio.get_running_loop()
            started = loop.time()
            node.warm.start()
            await asyncio.sleep(1.0)
            await node.warm.close()
            elapsed = loop.time() - started
            resigned = node.warm.stats.resigned[SDKAPPID]
            assert 1 <= resigned <= rate * elapsed + 2 * rate * interval, (resigned, elapsed)
        finally:
            await node.warm.close()
            await node.cache.close()


class TestRedisRestart:
    async def test_keep_warm_pauses_and_resumes(self, tmp_path: Path) -> None:
        """Redis killed mid-way (SIGKILL) and started again on its port with its data
        (append-only file): the loop pauses while it is away (requests are then signed
        locally, never below min_remaining) and resumes, keeping the user warm.

        Catches: the loop not pausing (a pass on a dead store counted as done), or not
        resuming once Redis answers again."""
        persist = ["--appendonly", "yes", "--appendfsync", "always"]
        server = RedisServer(tmp_path / "redis").start(persist)
        clock = Clock()
        node = instance(server.url, clock)
        await node.cache.probe()
        try:
            await ask(node, "grace")
            for _ in range(10):
                clock.now += STEP
                await node.tick()
            server.kill()
            for _ in range(6):
                clock.now += STEP
                await node.tick()
                await ask(node, "grace")  # signed locally, still >= min_remaining
                await asyncio.sleep(0.05)
            assert node.warm.stats.paused and node.warm.stats.pauses == 1
            server = RedisServer(tmp_path / "redis", port=server.port).start(persist)
            for _ in range(100):  # the health check closes the breaker within ~0.3 s
                if node.cache.healthy():
                    break
                await asyncio.sleep(0.05)
            resigned = node.warm.stats.resigned[SDKAPPID]
            while clock.now + STEP < START + POLICY.keep_warm:
                clock.now += STEP
                await node.tick()
                assert await node.cached("grace")
            assert not node.warm.stats.paused
            assert node.warm.stats.resigned[SDKAPPID] > resigned
        finally:
            await node.cache.close()
            server.stop()

    async def test_users_asking_after_redis_lost_its_data_are_kept_warm(
        self, pair: tuple[Instance, Instance, Clock], redis_server: RedisServer
    ) -> None:
        """Redis loses everything (FLUSHALL: what a restart without persistence leaves)
        minutes after a user's token: their next request, a miss, tracks them again, and
        they stay warm.

        Catches: that request's record spared because this process recorded the user
        within the hour (their record went with the data: they would never be re-signed)."""
        node, _, clock = pair
        await ask(node, "ivy")
        clock.now += 600
        redis_server.cli("FLUSHALL")
        assert not await ask(node, "ivy")
        await stays_warm(node, clock, "ivy", START + 2 * DAY)

    async def test_a_user_first_seen_during_an_outage_is_tracked_from_their_next_request(
        self, pair: tuple[Instance, Instance, Clock]
    ) -> None:
        """A user's first request, while the breaker is open, is signed and its token
        held (keep-warm's marks are dropped); their next request, once Redis is back, is
        a hit from the held token and tracks them: they stay warm.

        Catches: the process counting the dropped mark as made (that hit, within the
        hour, would record nothing, and the user would never be re-signed)."""
        node, _, clock = pair
        for _ in range(2):
            node.cache.breaker.failure()
        assert not node.cache.healthy()
        assert not await ask(node, "jack")
        await asyncio.sleep(0.35)  # the breaker's reset_after
        assert await node.cache.probe()
        await asks_again_from_the_held_token_and_stays_warm(node, clock, "jack")

    async def test_a_user_whose_record_failed_to_write_is_tracked_from_their_next_request(
        self, redis_server: RedisServer
    ) -> None:
        """Redis refuses writes for 1.5 s (CLIENT PAUSE WRITE), past the write budget but
        too few failures to open the breaker: a user's first request is signed, its
        keep-warm marks are lost and its token is held and written once Redis takes
        writes again. Their next request is a hit from that token and records them: they
        stay warm.

        Catches: the process remembering a record that never reached Redis (the hit,
        within the hour, would record nothing and the user would never be re-signed)."""
        clock = Clock()
        node = instance(redis_server.url, clock, failures=10)
        try:
            redis_server.cli("CLIENT", "PAUSE", "1500", "WRITE")
            assert not await ask(node, "kim")
            assert node.cache.healthy()  # the breaker stayed closed
            await asks_again_from_the_held_token_and_stays_warm(node, clock, "kim")
        finally:
            await node.cache.close()
