"""The worker processes behind the engine, driven straight from the event loop.

Each worker is a ``spawn``-ed process that loads the key set once and then answers calls
(a whole batch each) read from a pipe; the loop writes calls and reads results through
asyncio pipe transports. No thread is involved. The engine first ran on
``concurrent.futures.ProcessPoolExecutor``, but its queue-feeder and result threads must
take the GIL for every batch: under HTTP load they held it for much of the time and made a
batch's round trip take far longer than its signing (docs/PERFORMANCE.md).

Crash recovery: a worker's result pipe reaches end-of-file when it dies (SIGKILL, OOM).
Its calls fail, a new worker takes its place, and each failed call is retried once.
Reload: a new generation of workers with the new key set is started; once every one of
them is ready it takes all new calls, and the old workers finish what they hold and exit.

``spawn``, not ``fork``: the parent runs an event loop (and maybe threads), which fork
would copy in an undefined state; ``forkserver`` would leave its server process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import pickle
import signal
import struct
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import structlog

from signer.engine import worker
from signer.engine.errors import WorkerCrashed
from signer.engine.keyset import KeySet
from signer.engine.requests import SignRequest, WireResult

START_METHOD = "spawn"
STOP_TIMEOUT = 5.0
RESPAWN_PAUSE = 0.5
CALL_TIMEOUT = 30.0  # seconds; a batch takes milliseconds, a bulk chunk well under one
T = TypeVar("T")
_HEADER = struct.Struct("!i")  # multiprocessing.Connection's framing: the worker uses it
log = structlog.get_logger("signer.engine")


class _WorkerDied(Exception):
    """A call was lost with its worker; the pool retries it once."""


def _serve(keyset: KeySet, inbox: Connection, outbox: Connection) -> None:
    """The worker's main loop: run each call that arrives until the parent closes the pipe."""
    # Ctrl-C and SIGTERM are the parent's to handle. A terminal or a service manager
    # (systemd's KillMode=control-group) signals the whole process group at once, and a
    # worker that died then would fail the requests the parent is still draining; the
    # parent closes this pipe once it has drained. PR_SET_PDEATHSIG and SIGKILL still end it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker.initialize(keyset)
    while True:
        try:
            message = inbox.recv_bytes()
        except EOFError:
            return
        number, func, args = pickle.loads(message)  # noqa: S301 - our own parent's pipe
        try:
            reply = pickle.dumps((number, True, func(*args)), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a bug, not a bad item (those come back as values)
            failure = WorkerCrashed(f"worker call failed: {type(exc).__name__}: {exc}")
            reply = pickle.dumps((number, False, failure), pickle.HIGHEST_PROTOCOL)
        outbox.send_bytes(reply)


class _Results(asyncio.Protocol):
    """Reads the framed replies of one worker and settles the matching futures."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            number, ok, value = pickle.loads(buffer[_HEADER.size : end])  # noqa: S301 - our worker
            del buffer[:end]
            future = self.worker.calls.pop(number, None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.lost()


class _Worker:
    """One worker process and the two pipe ends the parent keeps."""

    def __init__(self, keyset: KeySet, context: Any, on_death: Callable[[_Worker], None]) -> None:
        inbox_reader, self._inbox = context.Pipe(duplex=False)
        self._outbox, outbox_writer = context.Pipe(duplex=False)
        self._child_ends = (inbox_reader, outbox_writer)
        self.process = context.Process(
            target=_serve, args=(keyset, inbox_reader, outbox_writer), daemon=True
        )
        self.calls: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self.retiring = False
        self._stopped = False
        self._on_death = on_death
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None

    async def launch(self, spawner: Executor) -> None:
        """Start the process and connect its pipes. Starting runs on ``spawner``'s thread:
        a spawn fork-execs an interpreter and writes it the pickled key set, milliseconds
        (or more, for many keys) that the event loop must not stand still for."""
        await asyncio.get_running_loop().run_in_executor(spawner, self.process.start)
        for end in self._child_ends:
            end.close()  # the child holds its own copies now
        loop = asyncio.get_running_loop()
        self._writer, _ = await loop.connect_write_pipe(asyncio.Protocol, self._inbox)
        self._reader, _ = await loop.connect_read_pipe(lambda: _Results(self), self._outbox)

    def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.writelines((_HEADER.pack(len(data)), data))

    def lost(self, report: bool = True) -> None:
        """The result pipe closed: the process is gone (``report`` it to the pool), or
        the pool is closing it. Either way no call waiting on it may hang."""
        if not self.alive:
            return
        self.alive = False
        for future in self.calls.values():
            if not future.done():
                future.set_exception(_WorkerDied())
        self.calls.clear()
        if report:
            self._on_death(self)

    def finish(self) -> None:
        """Let the worker exit once it has answered what it holds (end-of-file on its pipe)."""
        self.retiring = True
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()

    def stop(self, timeout: float) -> None:
        """Blocking: wait for the process to exit, then make sure it has (and reap it)."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.pid is None:  # never started
            for end in (*self._child_ends, self._inbox, self._outbox):
                end.close()
            return
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process.close()

    def close_transports(self) -> None:
        self.lost(report=False)
        for transport in (self._writer, self._reader):
            if transport is not None:
                transport.close()


class WorkerPool:
    """``workers`` processes holding ``keyset``; a call goes to the least busy one."""

    def __init__(
        self,
        keyset: KeySet,
        workers: int,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.workers = workers
        self.call_timeout = CALL_TIMEOUT
        self._context = multiprocessing.get_context(START_METHOD)
        self._keyset = keyset
        self._on_restart = on_restart
        self._numbers = itertools.count()
        self._current: list[_Worker] = []
        self._everyone: set[_Worker] = set()  # every worker not yet reaped, however new
        self._ready = asyncio.Event()
        self._closed = False
        self._starting: set[asyncio.Task[None]] = set()
        # One thread starts every worker and lives as long as the pool: Linux sends a
        # worker its die-with-parent signal when the *thread* that forked it ends.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="signer-spawn")

    async def warm_up(self) -> None:
        """Start every worker and wait until each has loaded its keys."""
        self._current = await self._start_generation(self._keyset)
        self._ready.set()

    async def _start_generation(self, keyset: KeySet) -> list[_Worker]:
        fresh = [self._spawn(keyset) for _ in range(self.workers)]
        try:
            outcomes = await asyncio.gather(
                *(self._start(w) for w in fresh), return_exceptions=True
            )
        except BaseException:  # cancelled: the started workers must not linger
            await asyncio.gather(*(self._reap(w, 0) for w in fresh))
            raise
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            await asyncio.gather(*(self._reap(w, 0) for w in fresh))
            raise failed[0]
        return fresh

    def _spawn(self, keyset: KeySet) -> _Worker:
        fresh = _Worker(keyset, self._context, self._died)
        self._everyone.add(fresh)
        return fresh

    async def _start(self, fresh: _Worker) -> None:
        await fresh.launch(self._spawner)
        try:
            await self._send(fresh, worker.ready, ())
        except _WorkerDied:
            raise WorkerCrashed(
                "a worker process died while starting (is the main module guarded by "
                "`if __name__ == '__main__'`? spawned workers re-import it)"
            ) from None

    def pids(self) -> list[int]:
        """Process ids of the current workers (for tests and diagnostics)."""
        return [w.process.pid for w in self._current if w.alive and w.process.pid]

    async def run(self, batch: list[SignRequest]) -> list[WireResult]:
        """Sign ``batch`` in a worker; after a worker crash, retry once on another.

        The requests travel as plain tuples: pickle takes a named tuple through Python-level
        reduction, which is much slower (see docs/PERFORMANCE.md)."""
        return await self.call(worker.sign_batch, [tuple(request) for request in batch])

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in a worker, retrying once if the worker dies meanwhile."""
        for _ in (1, 2):
            chosen = await self._choose()
            try:
                async with asyncio.timeout(self.call_timeout):
                    result: T = await self._send(chosen, func, args)
            except _WorkerDied:
                continue
            except TimeoutError:
                # A worker that hangs holds its calls for ever: kill it. Its other calls
                # fail over, a new worker takes its place, and this call is tried again.
                log.error("worker call timed out; killing the worker", pid=chosen.process.pid)
                chosen.process.kill()
                continue
            return result
        raise WorkerCrashed("a worker process died twice while signing this batch")

    async def _choose(self) -> _Worker:
        while True:
            if self._closed:
                raise WorkerCrashed("the worker pool is closed")
            live = [w for w in self._current if w.alive]
            if live:
                return min(live, key=lambda w: len(w.calls))
            self._ready.clear()  # every worker died at once: wait for replacements
            await self._ready.wait()

    def _send(self, chosen: _Worker, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        number = next(self._numbers)
        data = pickle.dumps((number, func, args), pickle.HIGHEST_PROTOCOL)  # may raise
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        chosen.calls[number] = future
        chosen.send(data)
        return future

    def _died(self, dead: _Worker) -> None:
        if self._closed:
            return  # close() reaps every worker itself
        if dead.retiring or dead not in self._current:
            self._background(self._reap(dead))  # a retired worker that has finished
        else:
            log.warning("a worker process died; starting another", pid=dead.process.pid)
            self._background(self._replace(dead))

    def _background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _reap(self, dead: _Worker, timeout: float = STOP_TIMEOUT) -> None:
        dead.close_transports()
        await asyncio.to_thread(dead.stop, timeout)
        self._everyone.discard(dead)

    async def _replace(self, dead: _Worker) -> None:
        self._on_restart()
        await self._reap(dead, 0)
        while not self._closed:
            try:
                fresh = self._spawn(self._keyset)
            except Exception as exc:  # e.g. out of file descriptors or processes
                log.error("cannot start a worker process", error=repr(exc))
                await asyncio.sleep(RESPAWN_PAUSE)
                continue
            try:
                await self._start(fresh)
            except Exception as exc:
                log.error("a new worker process failed to start", error=repr(exc))
                await self._reap(fresh, 0)
                await asyncio.sleep(RESPAWN_PAUSE)  # do not spin if workers cannot start
                continue
            index = self._current.index(dead) if dead in self._current else None
            if index is None:  # a reload replaced the generation meanwhile
                fresh.finish()
            else:
                self._current[index] = fresh
                self._ready.set()
            return

    async def reload(self, keyset: KeySet) -> None:
        """Serve new calls with ``keyset`` once its workers are ready; the old workers
        finish what they hold and exit, so no request is dropped."""
        fresh = await self._start_generation(keyset)
        old, self._current, self._keyset = self._current, fresh, keyset
        self._ready.set()
        for w in old:
            w.finish()

    def kill(self) -> None:
        """SIGKILL every worker at once (a forced stop); their calls fail."""
        self._closed = True
        for w in list(self._everyone):
            with contextlib.suppress(ValueError):  # already reaped and closed by close()
                if w.process.pid is not None and w.process.exitcode is None:
                    w.process.kill()

    async def close(self) -> None:
        """Stop every worker, waiting a little for each to exit by itself."""
        self._closed = True
        self._ready.set()
        for task in list(self._starting):
            task.cancel()
        everyone = list(self._everyone)
        for w in everyone:
            w.finish()
        await asyncio.gather(*(asyncio.to_thread(w.stop, STOP_TIMEOUT) for w in everyone))
        for w in everyone:
            w.close_transports()
        self._everyone.clear()
        self._spawner.shutdown(wait=False)  # every worker it started has exited
        await asyncio.sleep(0)  # let the transports run their connection_lost (closes fds)
