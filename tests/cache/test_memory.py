"""The in-process cache: a logout costs the variants of one user, not a scan of the cache,
and the per-user index behind it stays exact through overwrites, LRU eviction and expiry."""

from __future__ import annotations

import statistics
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from signer.cache.backends.memory import MemoryCache
from signer.cache.base import CachedToken, CacheKey

T = TypeVar("T")
APP, OTHER_APP = 1400000001, 1400000002


def now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a MemoryCache call to its end: it never waits for anything, so no loop is needed
    (and the measured time is the call's alone)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("a MemoryCache call suspended")


def entry(
    userid: str, sdkappid: int = APP, expire: int = 86400, issued_at: int = 1_700_000_000
) -> tuple[CacheKey, CachedToken]:
    key = CacheKey(sdkappid, "1~abcd1234", expire, "", userid)
    token = CachedToken("sig-" + userid, userid, sdkappid, issued_at, issued_at + expire, "1")
    return key, token


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class TestDeleteUser:
    def test_a_logout_at_100k_entries_costs_well_under_a_millisecond(self) -> None:
        """delete_user touches the variants of one user, not each of 100k entries (a full
        scan took ~10-40 ms of event-loop time here)."""
        cache = MemoryCache(100_000)
        now(cache.set_many([(*entry(f"user{i}"), 3600) for i in range(100_000)]))
        victims = [f"user{i}" for i in range(2000, 100_000, 2000)]
        for userid in victims:  # more variants of each, and the same userid in another app
            variants = [entry(userid, expire=e) for e in (3600, 7200)] + [entry(userid, OTHER_APP)]
            now(cache.set_many([(k, t, 3600) for k, t in variants]))
        assert len(cache) == 100_000  # the oldest users made room
        seconds = []
        for userid in victims:
            start = time.perf_counter()
            removed = now(cache.delete_user(APP, userid))
            seconds.append(time.perf_counter() - start)
            assert removed == 3
        assert statistics.median(seconds) < 0.001, f"median {statistics.median(seconds):.6f} s"
        for userid in victims:
            assert now(cache.get_many([entry(userid, OTHER_APP)[0]])) != [None]
            assert now(cache.get_many([entry(userid)[0]])) == [None]
        assert len(cache) == 100_000 - 3 * len(victims)

    def test_the_same_userid_in_another_app_stays(self) -> None:
        """A logout is per app: the user's tokens of another sdkappid are kept."""
        cache = MemoryCache()
        mine, theirs = entry("sam"), entry("sam", OTHER_APP)
        now(cache.set_many([(*mine, 60), (*theirs, 60)]))
        assert now(cache.delete_user(APP, "sam")) == 1
        assert now(cache.get_many([mine[0], theirs[0]])) == [None, theirs[1]]

    def test_a_token_issued_before_the_logout_is_not_stored_after_it(self) -> None:
        """A signing under way during the logout hands its token over afterwards: it is not
        cached. A token issued after the logout is."""
        clock = Clock()
        cache = MemoryCache(clock=clock)
        clock.now += 0.5
        assert now(cache.delete_user(APP, "sam")) == 0
        before = entry("sam", issued_at=int(clock.now))
        now(cache.set_many([(*before, 60)]))
        assert now(cache.get_many([before[0]])) == [None]
        clock.now += 1
        after = entry("sam", issued_at=int(clock.now))
        now(cache.set_many([(*after, 60)]))
        assert now(cache.get_many([after[0]])) == [after[1]]


USERS = st.sampled_from(["a", "b", "c", "a:b"])
APPS = st.sampled_from([APP, OTHER_APP])
EXPIRES = st.sampled_from([60, 120, 180])


class IndexMachine(RuleBasedStateMachine):
    """Random sets, reads, deletes, logouts and clock steps on a cache of 6 entries: the
    per-user index always names exactly the entries a full scan finds."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.cache = MemoryCache(6, clock=self.clock)

    def scan(self, sdkappid: int, userid: str) -> set[tuple[object, ...]]:
        return {k for k in self.cache._data if k[0] == sdkappid and k[4] == userid}

    @rule(
        items=st.lists(st.tuples(USERS, APPS, EXPIRES, st.integers(1, 5)), max_size=4),
    )
    def store(self, items: list[tuple[str, int, int, int]]) -> None:
        now(
            self.cache.set_many(
                [
                    (*entry(u, app, expire, int(self.clock.now)), ttl)  # overwrites too
                    for u, app, expire, ttl in items
                ]
            )
        )

    @rule(seconds=st.integers(0, 3))
    def tick(self, seconds: int) -> None:
        self.clock.now += seconds

    @rule(keys=st.lists(st.tuples(USERS, APPS, EXPIRES), max_size=4))
    def read(self, keys: list[tuple[str, int, int]]) -> None:
        """Reads drop expired entries and move hits to the young end."""
        now(self.cache.get_many([entry(u, app, expire)[0] for u, app, expire in keys]))

    @rule(keys=st.lists(st.tuples(USERS, APPS, EXPIRES), max_size=3))
    def delete(self, keys: list[tuple[str, int, int]]) -> None:
        now(self.cache.delete([entry(u, app, expire)[0] for u, app, expire in keys]))

    @rule(userid=USERS, sdkappid=APPS)
    def logout(self, userid: str, sdkappid: int) -> None:
        expected = len(self.scan(sdkappid, userid))
        size = len(self.cache)
        assert now(self.cache.delete_user(sdkappid, userid)) == expected
        assert self.scan(sdkappid, userid) == set()
        assert len(self.cache) == size - expected

    @precondition(lambda self: len(self.cache) > 0)
    @rule()
    def drop_everything(self) -> None:
        """Log every user out, one by one: nothing is left, in the cache or its index."""
        for key in list(self.cache._data):
            now(self.cache.delete_user(int(str(key[0])), str(key[4])))
        assert len(self.cache) == 0

    @invariant()
    def index_matches_a_full_scan(self) -> None:
        indexed: set[tuple[object, ...]] = set()
        for sdkappid in (APP, OTHER_APP):
            for userid in ("a", "b", "c", "a:b"):
                found = self.cache.user_keys(sdkappid, userid)
                assert found == self.scan(sdkappid, userid)
                indexed |= found
        assert indexed == set(self.cache._data)
        assert len(self.cache) <= 6


IndexMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestIndexAgainstAFullScan = pytest.mark.slow(IndexMachine.TestCase)  # 300 runs: seconds
