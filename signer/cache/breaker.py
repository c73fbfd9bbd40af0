"""A circuit breaker for the shared cache: after repeated failures, stop asking for a while.

Closed: calls go through. ``failure_threshold`` failures in a row open it: calls are
refused at once (the caller signs locally) for ``reset_after`` seconds. Then one trial call
is let through (half-open); its success closes the breaker, its failure opens it again.

Listeners hear each change of state once, as it happens: closed→open, open→half-open (when
the trial call is let through: time alone changes nothing a listener could act on),
half-open→open, and →closed. The backend uses them to start its health check and to tell
the service, which logs Redis going away and coming back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[State, State], None]
"""Called as ``listener(old, new)``; it runs inside the cache call that caused the change,
so it must be quick and must not raise."""


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._reported = State.CLOSED  # the state listeners last heard of
        self._listeners: list[Listener] = []
        self._last_outcome = clock()
        self.opened_count = 0

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._clock() - self._opened_at >= self.reset_after:
            return State.HALF_OPEN
        return State.OPEN

    def add_listener(self, listener: Listener) -> None:
        """Have ``listener(old, new)`` called on every change of state, once each."""
        self._listeners.append(listener)

    def idle_for(self) -> float:
        """Seconds since a call last succeeded or failed: how long the breaker has gone
        without news of the store (an idle instance learns nothing from its requests)."""
        return self._clock() - self._last_outcome

    def allow(self) -> bool:
        """May a call go to the store now? In half-open state, only one at a time."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            self._move(State.HALF_OPEN)
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False
        self._last_outcome = self._clock()
        if self._reported is not State.CLOSED:
            self._move(State.CLOSED)

    def failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        self._last_outcome = now = self._clock()
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            if self._opened_at is None or self.state is not State.OPEN:
                self.opened_count += 1
            self._opened_at = now
            self._move(State.OPEN)

    def _move(self, new: State) -> None:
        old, self._reported = self._reported, new
        if old is not new:
            for listener in self._listeners:
                listener(old, new)
