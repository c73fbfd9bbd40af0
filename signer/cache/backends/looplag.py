"""How late our own event loop runs its callbacks.

A Redis call that times out while the loop was too busy to read the reply (a burst of
requests, a large batch being decoded) says nothing about Redis: the answer may have sat in
the socket for most of the budget. :class:`~signer.cache.backends.guard.Guard` asks this
monitor before it holds a timeout against the circuit breaker.
"""

from __future__ import annotations

import asyncio


class LoopLag:
    """A 10 ms heartbeat that starts with the first question (an idle process pays nothing
    until a call has failed). A heartbeat that is overdue right now counts too, so a loop
    blocked by a large batch is recognised while it is still blocked."""

    INTERVAL = 0.01

    def __init__(self) -> None:
        self._lag = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def lag(self) -> float:
        """Seconds the loop is running behind, now or lately (decaying after a burst)."""
        loop = asyncio.get_running_loop()
        if self._handle is None:
            self._schedule(loop, loop.time())
        return max(self._lag, loop.time() - self._due)

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.INTERVAL
        self._handle = loop.call_at(self._due, self._beat, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self._lag = max(now - self._due, self._lag * 0.5)  # decays once the burst is over
        self._schedule(loop, now)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
