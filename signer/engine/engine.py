"""The signing engine: single sign requests in, micro-batches to worker processes out.

A round trip to a worker process costs the event loop and the worker more than several
P-256 signatures (docs/PERFORMANCE.md, issue 4), so requests that arrive together are
coalesced. A request that finds
every worker idle leaves at once (no added latency at low load), and a backlog is spread
over the idle workers in large batches. While a worker is busy, requests gather until a
batch comes back (its worker takes all that waits), or until they fill ``max_batch`` or
have waited ``max_delay``: only then do they wake an idle worker, or queue behind a busy
one's current batch so it never idles between two. Under load batches grow on their own,
and steady single requests keep one worker busy with large batches instead of waking
every worker for a few tokens each (fewer round trips and process wake-ups, which on a
small machine took the CPU from the event loop: docs/PERFORMANCE.md).
v2 (HMAC) tokens cost less CPU than the round trip, and can be signed inline on the event
loop when at most ``inline_v2_max`` arrive at once (default 0, never: inside a busy HTTP
loop, inline signing cost more than the round trip it saved).

The queue is bounded: past ``max_queued`` waiting items, submitting fails at once with
:class:`Overloaded` instead of growing memory and latency without limit.

Background work (keep-warm re-signs, warming ahead of an event) waits in a queue of its own
and yields to live requests: one background batch of at most ``background_batch`` items is
in flight at a time, and only when no live request waits and a worker has no live batch.
Live requests are dispatched as if it were not there, so the most a live request can wait
for keep-warm is the rest of one background batch on its worker (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from signer.core import IssuedToken, SignerError
from signer.engine import worker
from signer.engine.cpus import usable_cpus
from signer.engine.errors import EngineClosed, Overloaded
from signer.engine.keyset import KeySet
from signer.engine.pool import WorkerPool
from signer.engine.records import Format, Rendered
from signer.engine.requests import Signers, SignRequest, WireResult, from_wire, sign_one
from signer.engine.stats import EngineStats

Outcome = IssuedToken | SignerError
_ALGORITHM = {1: "v1", 2: "v2"}
BACKLOG_BATCH_FACTOR = 8
"""A backlog (a large ``sign_many``) goes to idle workers in batches of up to this many
times ``max_batch``: each round trip costs the event loop and the worker more than it
saves to split the backlog finer."""


class _Waiter:
    """Collects the outcomes of one ``sign_many`` call; one future per call, not per item."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.results: list[Outcome | None] = [None] * size
        self.remaining = size
        self.future: asyncio.Future[list[Outcome]] = loop.create_future()

    def deliver(self, index: int, outcome: Outcome) -> None:
        self.results[index] = outcome
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.results)  # type: ignore[arg-type]


_Entry = tuple[SignRequest, _Waiter, int]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Tuning of the engine, and the defaults of ``[engine]`` in the configuration file;
    the batching ones were chosen by ``bench/engine_batching.py``.

    ``max_delay`` is in seconds. ``inline_v2_max`` is 0: v2 tokens go to the workers too,
    because inside a busy HTTP loop signing them inline cost more than the round trip it
    saved (docs/PERFORMANCE.md); raise it where the event loop has time to spare."""

    workers: int = field(default_factory=usable_cpus)
    max_batch: int = 64
    max_delay: float = 0.002
    max_queued: int = 50_000
    inline_v2_max: int = 0
    in_flight_per_worker: int = 2
    background_batch: int = 16


class Engine:
    """Async facade over the worker pool. Use ``async with Engine(keys) as engine``."""

    def __init__(self, keyset: KeySet, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.stats = EngineStats()
        self._keyset = keyset
        self._signers: Signers = keyset.build_signers()  # also validates every key now
        self._pool: WorkerPool | None = None
        self._pending: list[_Entry] = []
        self._background: list[_Entry] = []
        self._background_in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._tick_scheduled = False

    async def start(self) -> None:
        """Start the worker processes and wait until each holds the keys."""
        if self._pool is None:
            self._pool = WorkerPool(self._keyset, self.settings.workers, self._count_restart)
            await self._pool.warm_up()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def keyset(self) -> KeySet:
        return self._keyset

    def worker_pids(self) -> list[int]:
        return self._pool.pids() if self._pool else []

    async def sign(self, request: SignRequest) -> IssuedToken:
        """Sign one token; raises its SignerError (policy, unknown app, Overloaded...)."""
        outcome = (await self.sign_many([request]))[0]
        if isinstance(outcome, SignerError):
            raise outcome
        return outcome

    async def sign_many(
        self, requests: Sequence[SignRequest], background: bool = False
    ) -> list[Outcome]:
        """Sign many tokens; results come back in order, a failed item as its error.

        The whole call is refused with :class:`Overloaded` if it would overfill the queue.
        ``background``: work nobody waits for (keep-warm), which yields to live requests
        (module docstring).
        """
        if self._closed:
            raise EngineClosed("the signing engine is closed")
        if not requests:
            return []
        if self._inline_ok(requests):
            return [self._finish(sign_one(self._signers, request), True) for request in requests]
        self._admit(len(requests))
        waiter = _Waiter(len(requests), asyncio.get_running_loop())
        queue = self._background if background else self._pending
        queue.extend((request, waiter, i) for i, request in enumerate(requests))
        self.stats.queue_depth += len(requests)
        if not self._tick_scheduled:
            # Dispatch at the end of this loop iteration: requests released together (say,
            # by a batch completing) then leave together instead of one by one.
            self._tick_scheduled = True
            asyncio.get_running_loop().call_soon(self._on_tick)
        return await waiter.future

    def _admit(self, count: int) -> None:
        depth = self.stats.queue_depth
        if depth + count > self.settings.max_queued:
            self.stats.rejected_overloaded += count
            raise Overloaded(
                f"signing queue is full ({depth} waiting, limit {self.settings.max_queued})"
            )

    def _inline_ok(self, requests: Sequence[SignRequest]) -> bool:
        """v2 only, and few: HMAC is cheaper than the round trip but must not hog the loop."""
        if self._pool is None:
            return True  # not started: callers that never start() sign inline (tests, CLI)
        if len(requests) > self.settings.inline_v2_max:
            return False
        for request in requests:
            signer = self._signers.get(request.sdkappid)
            if signer is None or signer.token_version != 2:
                return False
        return True

    async def sign_rendered(
        self, sdkappid: int, userids: list[str], expire: int, fmt: Format
    ) -> Rendered:
        """Sign one token per userid in a worker and get the records rendered (bulk use).

        Counts against the queue like ``sign_many``; the rendered bytes are the only thing
        that crosses back from the worker.
        """
        if self._closed:
            raise EngineClosed("the signing engine is closed")
        if self._pool is None:
            raise EngineClosed("the signing engine is not started")
        self._admit(len(userids))
        self.stats.queue_depth += len(userids)
        self.stats.record_batch(len(userids))
        try:
            rendered = await self._pool.call(worker.sign_rendered, sdkappid, userids, expire, fmt)
        finally:
            self.stats.queue_depth -= len(userids)
        signer = self._signers.get(sdkappid)
        algorithm = f"v{signer.token_version}" if signer else "unknown"
        self.stats.signed[(sdkappid, algorithm)] += rendered.tokens
        self.stats.failed += rendered.errors
        return rendered

    def _dispatch(self, timer_fired: bool, freed: bool = False) -> None:
        """Send what waits, by the rule in the module docstring. ``freed``: a batch just
        came back, so its worker takes all that waits."""
        settings = self.settings
        limit = settings.workers * settings.in_flight_per_worker
        # Live batches only: a background batch in flight is dispatched around, not waited on.
        live = self._in_flight - self._background_in_flight
        send_now = freed or live == 0
        while self._pending and self._in_flight < limit:
            waiting = len(self._pending)
            live = self._in_flight - self._background_in_flight
            idle_workers = settings.workers - live
            if idle_workers > 0 and (send_now or waiting >= settings.max_batch):
                # Everything waiting leaves now, in as few batches as max_batch allows,
                # spread over idle workers; a backlog larger than one batch each goes in
                # bigger batches (fewer round trips). A few requests while a worker is
                # busy wait for it (or for max_delay) below instead of waking an idle one.
                cap = settings.max_batch
                if waiting > settings.max_batch * idle_workers:
                    cap *= BACKLOG_BATCH_FACTOR
                batches = min(idle_workers, -(-waiting // settings.max_batch))
                size = min(cap, -(-waiting // batches))
                send_now = True  # what is left of this spread leaves too
            elif waiting >= settings.max_batch or timer_fired:
                # A worker is busy: another batch leaves (to an idle worker if any, else
                # behind a busy one's current batch) only when it is full, or has waited
                # max_delay, so that under load requests gather into few large batches.
                size = min(settings.max_batch, waiting)
            else:
                break
            batch = self._pending[:size]
            del self._pending[:size]
            self._start(batch, background=False)
        live = self._in_flight - self._background_in_flight
        if (
            self._background
            and not self._pending
            and not self._background_in_flight
            and live < settings.workers
        ):
            batch = self._background[: settings.background_batch]
            del self._background[: settings.background_batch]
            self._start(batch, background=True)
        if not self._pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        elif self._pending and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.settings.max_delay, self._on_timer)

    def _start(self, batch: list[_Entry], background: bool) -> None:
        self._in_flight += 1
        self._background_in_flight += background
        task = asyncio.get_running_loop().create_task(self._run(batch, background))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_tick(self) -> None:
        self._tick_scheduled = False
        self._dispatch(timer_fired=False)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch(timer_fired=True)

    async def _run(self, batch: list[_Entry], background: bool = False) -> None:
        assert self._pool is not None
        self.stats.record_batch(len(batch))
        try:
            results: list[WireResult] = await self._pool.run([entry[0] for entry in batch])
        except SignerError as exc:
            results = [exc] * len(batch)
        except Exception as exc:  # an executor failure we did not foresee: fail, never hang
            results = [SignerError(f"signing failed: {type(exc).__name__}")] * len(batch)
        finally:
            self._in_flight -= 1
            self._background_in_flight -= background
            self.stats.queue_depth -= len(batch)
        for (request, waiter, index), result in zip(batch, results, strict=True):
            waiter.deliver(index, self._finish(from_wire(request, result), False))
        if self._pending or self._background:
            self._dispatch(timer_fired=False, freed=True)

    def _finish(self, outcome: Outcome, inline: bool) -> Outcome:
        if isinstance(outcome, SignerError):
            self.stats.failed += 1
        else:
            self.stats.signed[(outcome.sdkappid, _ALGORITHM[outcome.token_version])] += 1
            self.stats.signed_inline += inline
        return outcome

    async def reload(self, keyset: KeySet) -> None:
        """Switch to ``keyset`` (key rotation) without dropping queued or running requests.

        Every key is loaded first; if one is bad the error is raised and nothing changes.
        """
        signers = keyset.build_signers()
        if self._pool is not None:
            await self._pool.reload(keyset)  # raises, changing nothing, if workers fail
        self._keyset, self._signers = keyset, signers

    async def close(self) -> None:
        """Refuse new work, finish what is queued, stop every worker process."""
        if self._closed:
            return
        self._closed = True
        if self._pending or self._background:
            self._dispatch(timer_fired=True)
        while self._tasks or self._pending or self._background:
            await asyncio.gather(*list(self._tasks))
            if self._pending or self._background:
                self._dispatch(timer_fired=True)
        if self._timer is not None:
            self._timer.cancel()
        if self._pool is not None:
            await self._pool.close()

    def kill(self) -> None:
        """Stop now: SIGKILL every worker process, without finishing anything (a forced
        exit; the workers ignore SIGTERM, and outside Linux nothing kills them with us)."""
        self._closed = True
        if self._pool is not None:
            self._pool.kill()

    def _count_restart(self) -> None:
        self.stats.worker_restarts += 1
