"""The one rule every call to Redis follows: a time budget, the circuit breaker, and an
account of failures.

Redis is an accelerator, not a dependency. A call that has not answered within its budget
(tens of milliseconds on the request path) is worth less than signing locally, so it is
abandoned and its caller treats it as a miss or a dropped write; enough failures in a row
open the breaker, and calls are then refused before they cost anything. Every command the
Redis backends send goes through :meth:`Guard.call`, as aiocache wraps each backend call in
its timeout, so there is one place that says what a failure is.

What a failure is: any exception (timeout, refused connection, an error reply such as OOM),
except a timeout while our own event loop was too busy to read the reply in time. That is a
request burst, not a slow Redis, and opening the breaker for it would make the burst worse
(every request would then sign). Such timeouts still count in :attr:`Guard.errors`.

Nor is a failure of a call that was already in flight when the last failure was held
against the breaker: calls that fail together (the thirty reads of one storm's moment, all
timing out because Redis was not scheduled for 50 ms) are one observation of Redis, not
thirty. Three failures in a row are three moments, one after another, at which Redis did
not answer: a Redis that is down or paused still opens the breaker within a few budgets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

from signer.cache.backends.looplag import LoopLag
from signer.cache.breaker import CircuitBreaker

T = TypeVar("T")
Args = TypeVarTuple("Args")


class Guard:
    """Budget, breaker and failure accounting for one backend's calls."""

    def __init__(self, breaker: CircuitBreaker, timeout: float) -> None:
        self.breaker = breaker
        self.timeout = timeout
        self.errors = 0
        """Calls that failed or timed out, breaker-excused timeouts included."""
        self.round_trips: Counter[str] = Counter()
        """Calls sent to Redis, by kind (``read``, ``lease``, ``write``, ...): what a token
        costs the shared store, beside :attr:`commands`."""
        self.commands: Counter[str] = Counter()
        """Commands those calls carried, by kind (a pipeline or MGET carries many)."""
        self.lag = LoopLag()
        self._held_against = -1.0  # when a failure was last held against the breaker

    async def call(
        self,
        operation: Callable[[*Args], Awaitable[T]],
        *args: *Args,
        budget: float | None = None,
        ask_breaker: bool = True,
        kind: str = "other",
        commands: int = 1,
    ) -> T | None:
        """``await operation(*args)`` within ``budget`` seconds (default: the backend's
        timeout); None if the breaker refuses it or it fails, which is then counted. An
        operation is a whole round trip (build the pipeline and execute it), so everything
        that can fail is inside the guard.

        ``ask_breaker=False`` for calls whose admission was decided elsewhere: a read asks
        when it is queued (in half-open state, the MGET carrying the one trial read must not
        be refused as a second trial), and a health probe asks Redis whatever the breaker
        says. None is never a successful answer: every operation returns a value.

        ``kind`` and ``commands`` (how many the operation sends) are counted in
        :attr:`round_trips` and :attr:`commands` once the call is made."""
        if ask_breaker and not self.breaker.allow():
            return None
        self.round_trips[kind] += 1
        self.commands[kind] += commands
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout if budget is None else budget):
                result = await operation(*args)
            self.breaker.success()
        except Exception as error:
            self.failed(error, started)
            return None
        return result

    def succeeded(self) -> None:
        """Record a call that reached Redis, for callers with their own try (retries)."""
        self.breaker.success()

    def failed(self, error: BaseException, started: float | None = None) -> None:
        """Record a failed call: always in :attr:`errors`, against the breaker unless it is
        a timeout while the event loop lagged by half the budget or more, or the call was
        ``started`` (``time.monotonic()``) before the last failure held against it."""
        self.errors += 1
        if isinstance(error, TimeoutError) and self.lag.lag() >= self.timeout / 2:
            return
        if started is not None and started < self._held_against:
            return
        self._held_against = time.monotonic()
        self.breaker.failure()

    def close(self) -> None:
        self.lag.stop()
