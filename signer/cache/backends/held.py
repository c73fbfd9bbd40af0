"""Token writes Redis could not take, held until it can.

A token signed while the breaker is open (Redis away, paused, or starved of CPU for a
moment) is good for hours. Dropping its write made the next request for its userid sign
again: every token of an outage was signed twice, and on a busy two-core machine a 50 ms
hiccup of a starved Redis (read timeouts with our own loop on time, so the breaker opened)
cost a million-login storm thousands of signatures in its warm phase. Such writes are held
instead, in a bounded buffer (memory must not follow an outage), and made once the breaker
closes, with the lifetime they have left and only where no entry is (``SET ... NX``):
whatever was stored meanwhile is newer. A logout or ban made meanwhile still wins: a token
issued before its user's revocation marker is never served
(:func:`~signer.cache.backends.layout.read_entry`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

Write = tuple[bytes, bytes, int]
"""A name, its codec bytes and its TTL in milliseconds."""

MIN_LEFT_MS = 1000
"""A held write with less time than this left is not worth the round trip."""


class HeldWrites:
    """At most ``limit`` writes, each with the moment it was held."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._writes: deque[tuple[float, Write]] = deque()

    def __len__(self) -> int:
        return len(self._writes)

    def hold(self, writes: Iterable[Write]) -> int:
        """Keep ``writes`` for later; returns how many did not fit (the caller drops them)."""
        now = self._clock()
        refused = 0
        for write in writes:
            if len(self._writes) >= self._limit:
                refused += 1
            else:
                self._writes.append((now, write))
        return refused

    def take(self) -> tuple[list[Write], int]:
        """Every held write with its TTL shortened by the time it was held, and how many
        were left out because their entry would have expired (or nearly) by now."""
        now = self._clock()
        ready: list[Write] = []
        expired = 0
        while self._writes:
            held_at, (name, value, ttl_ms) = self._writes.popleft()
            left = ttl_ms - int((now - held_at) * 1000)
            if left < MIN_LEFT_MS:
                expired += 1
            else:
                ready.append((name, value, left))
        return ready, expired
