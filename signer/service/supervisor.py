"""Several HTTP processes on one port: ``[server] processes = N``.

One event loop is the limit of one process, and aiohttp's own work is a large share of
what each request costs it (see docs/PERFORMANCE.md). With ``processes`` above 1 this
parent binds one listening socket per child to the same port (``SO_REUSEPORT``: the kernel
spreads connections over them), starts the children and then only supervises. A child
that dies is started again at once. While a sibling serves, the dead one's socket is closed
first: the kernel then sends new connections to the siblings instead of queueing them for a
process that is not there yet (the replacement gets a socket that is only bound, and listens
once it can serve). Connections already queued on the closed socket are reset, unless the
host sets ``net.ipv4.tcp_migrate_req = 1`` (the kernel then hands them to a sibling); see
docs/RELIABILITY.md for what either costs a client. SIGHUP is passed on to every child (each
reloads); SIGTERM or SIGINT is passed on, every child drains, and the parent exits 0.

Each child is a whole service (its own engine and workers) that writes a snapshot of its
metrics to a shared directory, so that ``/metrics`` of any child reports the sum of all.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from signer.config import ConfigError, Settings, load_settings
from signer.service.logs import configure, get_logger
from signer.service.server import run_process

log = get_logger("signer.supervisor")
RESTART_PAUSE = 1.0  # after an early death: a child that cannot start must not loop
EARLY_DEATH = 10.0  # a child that dies this soon after starting failed to start
MAX_EARLY_DEATHS = 5  # in a row: then the service gives up instead of looping for ever


METRICS_PREFIX = "signer-metrics-"  # then the supervisor's pid: see _sweep_stale_metrics


class GaveUp(Exception):
    """The HTTP processes keep dying as they start."""


def listening_sockets(host: str, port: int, count: int, backlog: int = 1024) -> list[socket.socket]:
    """``count`` sockets listening on one port; port 0 picks a free one for all of them.

    A probe binds the port first without SO_REUSEPORT, so that a port already served by
    another process (even with SO_REUSEPORT) is an error, not a silent share of its traffic.
    It does set SO_REUSEADDR, as every listening socket here does: connections of a
    previous instance left in TIME-WAIT must not stop a restart.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_server((host, port), reuse_port=True, backlog=backlog)
            port = sock.getsockname()[1]
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket of the port's SO_REUSEPORT group, bound but not listening: the kernel sends
    it no connection until the child it is given to calls listen() (aiohttp's site does,
    once the child can serve)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _sweep_stale_metrics(tmp: Path) -> None:
    """Remove the metrics directories of supervisors that are gone: one killed with
    SIGKILL (or by the OOM killer) could not remove its own. One with this process's pid
    is stale too (a container restarted in place runs its supervisor as pid 1 again)."""
    for directory in tmp.glob(f"{METRICS_PREFIX}*-*"):
        pid = directory.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _child(
    settings: Settings,
    config_path: Path | None,
    overrides: dict[str, object],
    sock: socket.socket,
    metrics: str,
) -> None:
    from signer.engine.worker import die_with_parent

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    # SIGHUP arrives blocked (see Supervisor._start) and stays pending until serve()
    # handles it: ignoring it instead would drop a reload sent while this child starts.
    if config_path is not None and not settings.dev_mode:
        # A child started again after a SIGHUP must serve what its siblings reloaded.
        try:
            settings = load_settings(config_path, overrides)
        except ConfigError as exc:
            log.error("config file unusable; starting with the previous one", problems=exc.problems)
    run_process(settings, config_path, overrides, sock, Path(metrics))


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        overrides: dict[str, object] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.overrides = overrides or {}
        self.count = settings.processes
        self._context = multiprocessing.get_context("spawn")
        self._children: list[BaseProcess | None] = [None] * self.count
        self._started = [0.0] * self.count
        self._early_deaths = 0
        self._signals: list[int] = []

    def run(self) -> None:
        server = self.settings.server
        sockets = listening_sockets(server.host, server.port, self.count, server.backlog)
        _sweep_stale_metrics(Path(tempfile.gettempdir()))
        metrics = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        log.info(
            "supervising HTTP processes",
            processes=self.count,
            chosen=self.settings.processes_chosen(),
            url=f"http://{server.host}:{sockets[0].getsockname()[1]}",
        )
        try:
            for index in range(self.count):
                self._start(index, sockets[index], metrics)
            self._watch(sockets, metrics)
        finally:
            self._stop_all()
            for sock in sockets:
                sock.close()
            shutil.rmtree(metrics, ignore_errors=True)
        log.info("stopped")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def _start(self, index: int, sock: socket.socket, metrics: str) -> None:
        child = self._context.Process(
            target=_child,
            args=(self.settings, self.config_path, self.overrides, sock, metrics),
            name=f"signer-http-{index}",
        )
        # Spawned with SIGHUP blocked (the mask survives fork and exec): a reload sent
        # while the child imports and loads its keys waits for serve() instead of killing
        # it (the default action) or being lost.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            child.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._children[index] = child
        self._started[index] = time.monotonic()

    def _watch(self, sockets: list[socket.socket], metrics: str) -> None:
        while True:
            while self._signals:
                signum = self._signals.pop(0)
                if signum == signal.SIGHUP:
                    self._forward(signal.SIGHUP)
                else:
                    return
            sentinels = {c.sentinel: i for i, c in enumerate(self._children) if c is not None}
            for ready in wait(list(sentinels), timeout=0.2):
                index = sentinels[ready]  # type: ignore[index]
                dead = self._children[index]
                assert dead is not None
                dead.join()
                if self._stopping():
                    break  # it stopped as asked (a group SIGTERM reached it first)
                if time.monotonic() - self._started[index] < EARLY_DEATH:
                    self._early_deaths += 1
                    if self._early_deaths >= MAX_EARLY_DEATHS:
                        log.error("HTTP processes keep dying as they start; giving up")
                        raise GaveUp()
                else:
                    self._early_deaths = 0
                if self._siblings_serve(index, sockets):
                    sockets[index] = self._fresh_socket(sockets[index])
                log.error("HTTP process died; starting another", exit_code=dead.exitcode)
                if self._early_deaths:
                    time.sleep(RESTART_PAUSE)
                if not self._signals:
                    self._start(index, sockets[index], metrics)

    def _siblings_serve(self, index: int, sockets: list[socket.socket]) -> bool:
        """Whether another child is alive and listening (a replacement still starting has
        a socket that is only bound): if none is, the dead child's socket is kept, so that
        new connections wait in its queue for the replacement instead of being refused."""
        return any(
            child is not None
            and child.is_alive()
            and sockets[i].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            for i, child in enumerate(self._children)
            if i != index
        )

    def _fresh_socket(self, dead: socket.socket) -> socket.socket:
        """Close the dead child's listening socket (nobody accepts on it: the kernel would
        queue new connections there until the replacement is up) and bind the one its
        replacement will listen on. Kept as it was if the port cannot be bound again: a
        wait in its queue is better than no socket at all."""
        host, port = dead.getsockname()[:2]
        try:
            fresh = bound_socket(host, port)
        except OSError as exc:
            log.warning(
                "cannot bind the port again; the replacement keeps the old socket", error=str(exc)
            )
            return dead
        dead.close()
        return fresh

    def _stopping(self) -> bool:
        """Whether a SIGTERM or SIGINT waits to be handled."""
        return any(signum != signal.SIGHUP for signum in self._signals)

    def _forward(self, signum: int) -> None:
        for child in self._children:
            if child is not None and child.is_alive() and child.pid:
                os.kill(child.pid, signum)

    def _stop_all(self) -> None:
        """Let every child drain; asked to stop again (a second Ctrl-C), kill them now."""
        self._forward(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.shutdown_timeout + 10
        for child in self._children:
            if child is None:
                continue
            while child.is_alive() and time.monotonic() < deadline:
                if self._stopping():
                    log.warning("asked again to stop: killing the HTTP processes")
                    deadline = 0.0
                    break
                child.join(0.1)
            if child.is_alive():
                child.kill()
                child.join()


def supervise(
    settings: Settings, config_path: Path | None, overrides: dict[str, object] | None = None
) -> None:
    """Entry point of ``signer serve`` when ``[server] processes`` is above 1."""
    configure(settings.server.log_format, settings.server.log_level)
    try:
        Supervisor(settings, config_path, overrides).run()
    except GaveUp:
        raise SystemExit(1) from None
