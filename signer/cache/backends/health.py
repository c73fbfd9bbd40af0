"""Whether Redis answers, known on an idle instance too.

The circuit breaker learns of Redis from the calls requests make. An instance with no
traffic would learn nothing: after Redis returned it would stay down forever (readiness,
``signer_cache_up``), or stay up while Redis is gone. :class:`HealthWatch` PINGs Redis at
start-up and then whenever the breaker has no fresh news, and tells listeners of each change
between up and down, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from signer.cache.backends.guard import Guard
from signer.cache.breaker import State

PROBE_TIMEOUT = 0.5  # a health check's PING is on no request's path


class HealthWatch:
    """PINGs through the backend's guard, so an answer counts in the breaker like any call."""

    def __init__(self, guard: Guard, ping: Callable[[], Awaitable[object]]) -> None:
        self._guard = guard
        self._ping = ping
        self._listeners: list[Callable[[bool], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        guard.breaker.add_listener(self._breaker_changed)

    async def probe(self) -> bool:
        """Ask Redis now (PING) whether it answers. While the breaker is closed a failed
        PING is asked again, up to its failure threshold: a lost packet does not open it, a
        dead server does. Never raises. Also starts the background check (:meth:`_watch`)."""
        self._start()
        breaker = self._guard.breaker
        budget = max(self._guard.timeout, PROBE_TIMEOUT)
        for _ in range(breaker.failure_threshold):
            # The probe is how an open breaker learns Redis is back: it does not ask it.
            answer = await self._guard.call(
                self._ping, budget=budget, ask_breaker=False, kind="ping"
            )
            if answer is not None:
                return True
            if breaker.state is not State.CLOSED:
                return False
        return False

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` once when Redis stops answering (the breaker opens), once
        when it answers again (the breaker closes); never for the trial calls in between."""
        self._listeners.append(listener)

    def _breaker_changed(self, old: State, new: State) -> None:
        if new is not State.CLOSED:
            self._start()
        if (old is State.CLOSED) != (new is State.CLOSED):
            for listener in self._listeners:
                listener(new is State.CLOSED)

    def _start(self) -> None:
        if self._closed or (self._watcher is not None and not self._watcher.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a breaker driven by hand, outside any event loop
            return
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Every ``reset_after`` seconds, PING Redis if the breaker is not closed or no call
        has reached Redis since the last round. Busy instances send nothing more: their
        requests are the check."""
        breaker = self._guard.breaker
        while True:
            await asyncio.sleep(breaker.reset_after)
            if breaker.state is State.CLOSED and breaker.idle_for() < breaker.reset_after:
                continue
            await self.probe()

    async def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
