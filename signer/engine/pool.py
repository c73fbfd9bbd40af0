"""The process pool behind the engine: generations, crash recovery and key reload.

A ``ProcessPoolExecutor`` whose worker dies (SIGKILL, OOM) becomes "broken": every task in
it fails with ``BrokenProcessPool`` and it accepts no more. :class:`WorkerPool` then builds a
fresh executor (once per broken generation, however many batches notice) and each failed
batch is retried once on it. A key reload also builds a fresh executor; the previous one
finishes what it already holds and is retired, so no request is dropped.

The start method is ``spawn``: the parent runs an event loop and threads, which ``fork``
would copy in an undefined state, and ``forkserver`` would leave its server process behind
after :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from signer.engine import worker
from signer.engine.errors import WorkerCrashed
from signer.engine.keyset import KeySet
from signer.engine.requests import SignRequest, WireResult

START_METHOD = "spawn"
T = TypeVar("T")


class WorkerPool:
    """A replaceable ProcessPoolExecutor of ``workers`` processes holding ``keyset``."""

    def __init__(
        self,
        keyset: KeySet,
        workers: int,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.workers = workers
        self._context = multiprocessing.get_context(START_METHOD)
        self._keyset = keyset
        self._executor = self._new_executor(keyset)
        self._retired: list[ProcessPoolExecutor] = []
        self._on_restart = on_restart

    def _new_executor(self, keyset: KeySet) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=worker.initialize,
            initargs=(keyset,),
        )

    async def warm_up(self) -> None:
        """Start every worker and wait until each has loaded its keys."""
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            await asyncio.gather(
                *(loop.run_in_executor(executor, worker.ready) for _ in range(self.workers))
            )
        except BrokenProcessPool:
            raise WorkerCrashed(
                "worker processes died while starting (is the main module guarded by "
                "`if __name__ == '__main__'`? spawned workers re-import it)"
            ) from None

    def pids(self) -> list[int]:
        """Process ids of the current workers (for tests and diagnostics)."""
        return list(getattr(self._executor, "_processes", {}) or {})

    async def run(self, batch: list[SignRequest]) -> list[WireResult]:
        """Sign ``batch`` in a worker; after a worker crash, retry once on a new pool."""
        return await self.call(worker.sign_batch, batch)

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in a worker, retrying once on a new pool after a crash."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            executor = self._executor
            try:
                return await loop.run_in_executor(executor, func, *args)
            except BrokenProcessPool:
                self._replace_broken(executor)
                if attempt == 2:
                    break
        raise WorkerCrashed("a worker process died twice while signing this batch")

    def _replace_broken(self, broken: ProcessPoolExecutor) -> None:
        if broken is not self._executor:
            return  # another batch already replaced it
        self._executor = self._new_executor(self._keyset)
        self._retire(broken)
        self._on_restart()

    def reload(self, keyset: KeySet) -> None:
        """Serve new batches with ``keyset``; batches already queued finish on the old one."""
        old = self._executor
        self._keyset = keyset
        self._executor = self._new_executor(keyset)
        self._retire(old)

    def _retire(self, executor: ProcessPoolExecutor) -> None:
        executor.shutdown(wait=False)
        self._retired.append(executor)

    def close(self) -> None:
        """Blocking: shut every executor down and make sure no worker outlives it."""
        executors = [*self._retired, self._executor]
        pids = [pid for ex in executors for pid in (getattr(ex, "_processes", {}) or {})]
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
        for pid in pids:  # belt and braces: a wedged worker must not survive close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._retired.clear()
