"""The one guarded call every Redis command goes through: a time budget, the circuit breaker
asked first, and failure accounting that tells a slow Redis from a busy event loop.

The operations here are plain coroutines (a sleep, a refused connection): what is under test
is the guard's rule, not Redis, which the backend tests exercise for real."""

from __future__ import annotations

import asyncio
import time

from signer.cache.backends.guard import Guard
from signer.cache.breaker import CircuitBreaker, State

BUDGET = 0.02


def guard(threshold: int = 1) -> Guard:
    return Guard(CircuitBreaker(failure_threshold=threshold, reset_after=60.0), timeout=BUDGET)


async def answer(value: str) -> str:
    return value


async def too_slow() -> str:
    await asyncio.sleep(10 * BUDGET)
    return "late"


async def blocks_the_loop_then(error: Exception | None) -> str:
    """What a burst of requests does to the loop: nothing else runs for 5 budgets."""
    time.sleep(5 * BUDGET)
    if error is not None:
        raise error
    await asyncio.sleep(10 * BUDGET)
    return "late"


class TestGuardedCall:
    async def test_an_answer_within_the_budget_is_returned_and_counts_as_success(self) -> None:
        """The operation's result comes back, and a success closes a breaker left open."""
        calls = guard(threshold=3)
        calls.breaker.failure()
        assert await calls.call(answer, "pong") == "pong"
        assert calls.breaker.state is State.CLOSED and calls.errors == 0

    async def test_a_timeout_is_a_failure_when_the_loop_keeps_up(self) -> None:
        """A call past its budget gives None at once and counts against the breaker."""
        calls = guard()
        start = time.monotonic()
        assert await calls.call(too_slow) is None
        assert time.monotonic() - start < 5 * BUDGET
        assert calls.errors == 1 and calls.breaker.state is State.OPEN

    async def test_calls_that_time_out_together_are_one_failure(self) -> None:
        """Twenty reads in flight at one moment Redis did not answer open no breaker of
        threshold 2; a call made after them that fails too does.

        Catches: each in-flight call counted (a 50 ms hiccup of a CPU-starved Redis opened
        the breaker mid-storm, and every warm request of the next 2 s signed again)."""
        calls = guard(threshold=2)
        results = await asyncio.gather(*(calls.call(too_slow) for _ in range(20)))
        assert results == [None] * 20 and calls.errors == 20
        assert calls.breaker.state is State.CLOSED
        assert await calls.call(too_slow) is None
        assert calls.breaker.state is State.OPEN

    async def test_a_longer_budget_is_honoured(self) -> None:
        """``budget`` replaces the default timeout for calls off the request path."""
        assert await guard().call(too_slow, budget=20 * BUDGET) == "late"

    async def test_a_timeout_while_the_loop_lags_is_not_held_against_redis(self) -> None:
        """The loop was blocked past the budget: the timeout is counted as an error but
        does not open the breaker (Redis may have answered in time)."""
        calls = guard()
        calls.lag.lag()  # the heartbeat runs, as it does once the service has served a call
        await asyncio.sleep(0.03)
        assert await calls.call(blocks_the_loop_then, None) is None
        assert calls.errors == 1 and calls.breaker.state is State.CLOSED

    async def test_a_refused_connection_counts_even_while_the_loop_lags(self) -> None:
        """Only timeouts are excused by a busy loop: an error reply or a refused
        connection is news about Redis."""
        calls = guard()
        calls.lag.lag()
        await asyncio.sleep(0.03)
        assert await calls.call(blocks_the_loop_then, ConnectionRefusedError()) is None
        assert calls.errors == 1 and calls.breaker.state is State.OPEN

    async def test_an_open_breaker_makes_no_call(self) -> None:
        """Breaker open: the operation is never started, the answer is None, no error."""
        calls = guard()
        calls.breaker.failure()
        started: list[str] = []

        async def operation() -> str:
            started.append("called")
            return "answer"

        assert await calls.call(operation) is None
        assert started == [] and calls.errors == 0

    async def test_a_call_not_asking_the_breaker_goes_through_it(self) -> None:
        """``ask_breaker=False`` (a read admitted when it was queued, a health probe):
        the call is made while the breaker is open, and its success closes it."""
        calls = guard()
        calls.breaker.failure()
        assert await calls.call(answer, "pong", ask_breaker=False) == "pong"
        assert calls.breaker.state is State.CLOSED
