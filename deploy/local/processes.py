"""Processes started here and stopped by pid: the one launcher of ``deploy/local``,
``python -m loadtest --local`` and ``bench/storm.py``.

Every process is started in a session of its own (a Ctrl-C in the terminal reaches only the
harness, which then stops them in order). An attached one (the default) also gets
``PR_SET_PDEATHSIG``, so that none outlives its harness even if that is killed; a
``detached`` one is meant to outlive the command that started it (``deploy/local/up``) and
is found again by its :class:`Tracked` record (pid and kernel start time, so that a pid
reused by another process is never signalled).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STOP_TIMEOUT = 15.0  # seconds a SIGTERMed process may take before it is SIGKILLed


def free_port(below: int = 65536) -> int:
    """A free loopback port; ``below`` bounds it (a cluster node needs port + 10000 too)."""
    for _ in range(200):
        with socket.socket() as sock:
            if below >= 65536:
                sock.bind(("127.0.0.1", 0))
                return int(sock.getsockname()[1])
            port = random.randrange(20000, below)  # noqa: S311 (a port, not a secret)
            try:
                sock.bind(("127.0.0.1", port))
                with socket.socket() as bus:  # the cluster bus port must be free too
                    bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {below}")


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when its parent exits, however it exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (``/proc/PID/stat`` field 22), None if it is gone
    or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state ppid ...
    return None if fields[0] == "Z" else fields[19]


@dataclass(frozen=True)
class Tracked:
    """A process started here, as written to a state file and read back."""

    name: str
    pid: int
    start: str
    log: str = ""

    def running(self) -> bool:
        return start_time(self.pid) == self.start

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def descendants(pids: list[int]) -> dict[int, str]:
    """Every live process among ``pids`` and their descendants: pid -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        if fields[0] != "Z":
            starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in found:
            found[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return found


def stop_tracked(
    records: list[Tracked],
    *,
    timeout: float = STOP_TIMEOUT,
    reap: Callable[[Tracked, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> int:
    """SIGTERM each record still running, newest first; SIGKILL whatever of them or their
    descendants (HTTP processes, signing workers) is left after ``timeout`` seconds (and
    10 s more for the descendants). ``reap(record, seconds)`` waits for one of our own
    children (so none stays a zombie). Returns how many had to be killed."""
    live = [r for r in records if r.running()]
    tree = descendants([r.pid for r in live])
    for record in reversed(live):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = 0
    for record in reversed(live):
        if reap is not None:
            reap(record, max(0.1, deadline - time.monotonic()))
        while record.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if record.running():
            if say:
                say(f"{record.name} (pid {record.pid}) ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
            killed += 1
            if reap is not None:
                reap(record, 5.0)
    deadline = time.monotonic() + 10
    left = tree
    while True:
        left = {pid: start for pid, start in left.items() if start_time(pid) == start}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in left:
        if say:
            say(f"pid {pid} outlived its parent; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed + len(left)


@dataclass
class Processes:
    """Everything started here, stopped by pid in reverse order."""

    detached: bool = False  # outlive this process (no PR_SET_PDEATHSIG)
    say: Callable[[str], None] | None = None  # where stop_all reports what it had to kill
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)
    directories: list[Path] = field(default_factory=list)  # removed after the processes
    keep_logs: Path | None = None  # where the logs in those directories are moved first

    def start(
        self,
        name: str,
        argv: list[str],
        log: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with its output appended to ``log``. Without ``env``, the
        environment less ``SIGNER_*`` (so that a shell's settings never reach a config)."""
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
        with open(log, "ab") as handle:
            process = subprocess.Popen(  # noqa: S603 (argv built by the caller)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=None if self.detached else die_with_parent,
            )
        self.started.append((name, process))
        self.logs[process.pid] = log
        return process

    def alive(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self.started)

    def tracked(self) -> list[Tracked]:
        """The records of the processes still running, oldest first."""
        out = []
        for name, process in self.started:
            start = start_time(process.pid) if process.poll() is None else None
            if start is not None:
                out.append(Tracked(name, process.pid, start, str(self.logs[process.pid])))
        return out

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM each, by pid, newest first; SIGKILL what is still there after
        ``timeout`` s, and any descendant left behind. Then remove :attr:`directories`.
        Returns how many had to be killed."""
        processes = {p.pid: p for _, p in self.started}

        def reap(record: Tracked, seconds: float) -> None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                processes[record.pid].wait(timeout=seconds)

        killed = stop_tracked(self.tracked(), timeout=timeout, reap=reap, say=self.say)
        for process in processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.started.clear()
        for directory in self.directories:  # keys, configs and logs of a temp deployment
            if self.keep_logs is not None:
                self._keep_logs(directory, self.keep_logs)
            shutil.rmtree(directory, ignore_errors=True)
        self.directories.clear()
        return killed

    @staticmethod
    def _keep_logs(directory: Path, into: Path) -> None:
        """Move the process logs of ``directory`` (not the keys or configs beside them)."""
        for log in directory.glob("*.log"):
            into.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.move(log, into / log.name)


def wait_http(
    probe: str, deadline: float, alive: Callable[[], bool], what: str, log: Path | None = None
) -> None:
    """Until ``probe`` answers 200. If ``alive()`` turns false or the monotonic
    ``deadline`` passes first: RuntimeError naming ``what`` with the end of its ``log``."""
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=2) as answer:  # noqa: S310 (loopback)
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        problem = None
        if not alive():
            problem = f"{what} exited while starting"
        elif time.monotonic() > deadline:
            problem = f"{what} was not ready in time"
        if problem is not None:
            if log is not None and log.exists():
                problem += "; its log ends:\n" + log.read_text(errors="replace")[-2000:]
            raise RuntimeError(problem)
        time.sleep(0.1)
