"""The fault suite: each fault injected into a real local topology under steady load
(:mod:`deploy.local.load`, through nginx), measured before, during and after.

    bash deploy/local/faults [NAME...] [--short] [--rate R] [--no-report]

Faults share a topology where they can: the ``cluster`` ones a Redis Cluster (3 masters
with a replica each) behind N instances, the ``standalone`` ones one redis-server reached
through a TCP proxy this process controls (for the blackhole), behind N instances of two
HTTP processes each (for the HTTP process kill). The long versions (the command) append
their figures to docs/RELIABILITY.md; ``--short`` ones (the test suite's) take seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.keys import ROOT
from deploy.local.load import Load, Sample, p99, recovery
from deploy.local.processes import descendants
from deploy.local.proxy import Proxy
from deploy.local.redis import CLUSTER_OPTIONS, cluster_layout, command, redis_server
from deploy.local.topology import Topology

REPORT = ROOT / "docs" / "RELIABILITY.md"
TRANSPORT = ("http_status", "connection")  # failures that are not a wrong token
DIRECT_RATE = 50  # new connections a second straight to the instance whose process is killed


@dataclass
class Timing:
    before: float  # seconds of load before the fault
    after: float  # seconds of load after it ended
    outage: float  # how long a timed fault lasts (Redis down, paused, blackholed)

    @classmethod
    def of(cls, short: bool) -> Timing:
        return cls(1.5, 3.0, 2.0) if short else cls(10.0, 15.0, 10.0)


@dataclass
class Result:
    name: str
    title: str
    sent: int
    failed: int
    bad_tokens: int
    failures: dict[str, int]
    p99_ms: tuple[float | None, float | None, float | None]  # before, during, after
    recovery_s: float
    notes: dict[str, Any] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def row(self) -> str:
        cells = [f"{v:.1f}" if v is not None else "-" for v in self.p99_ms]
        notes = "; ".join(f"{k} {v}" for k, v in self.notes.items())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.failures.items()))
        failed = f"{self.failed}" + (f" ({kinds})" if kinds else "")
        return (
            f"| {self.title} | {self.sent:,} | {failed} | {self.bad_tokens} | "
            f"{' / '.join(cells)} | {self.recovery_s:.1f} | {notes} |"
        )


@dataclass
class Run:
    """One topology under load, and what a fault needs to act on it."""

    topology: Topology
    load: Load
    timing: Timing
    proxy: Proxy | None = None


Action = Callable[[Run], tuple[float, float, dict[str, Any]]]


@dataclass(frozen=True)
class Fault:
    title: str
    kind: str  # "cluster" or "standalone": the topology it runs on
    act: Action


# --------------------------------------------------------------------------- the faults


def cluster_master_kill(run: Run) -> tuple[float, float, dict[str, Any]]:
    """SIGKILL a master; wait until its replica is promoted; start it again (it rejoins
    as a replica)."""
    topology = run.topology
    assert topology.cluster is not None
    layout = cluster_layout(topology.cluster.masters[0])
    victim = sorted(layout)[-1]
    survivor = next(p for p in layout if p != victim)
    name, process = run.topology.redis_process(victim)
    began = time.monotonic()
    process.kill()
    process.wait()
    promoted = None
    while time.monotonic() - began < 30:
        with contextlib.suppress(OSError):
            now = cluster_layout(survivor)
            if victim not in now and len(now) == len(layout):
                promoted = time.monotonic() - began
                break
        time.sleep(0.05)
    ended = time.monotonic()
    redis_server(topology.procs, topology.logs, name, CLUSTER_OPTIONS, port=victim)
    return began, ended, {"replica promoted after (s)": _round(promoted)}


def redis_kill(run: Run) -> tuple[float, float, dict[str, Any]]:
    """SIGKILL the standalone Redis, leave it down for the outage, start it again (empty:
    no persistence) on its port."""
    topology = run.topology
    _, process = topology.redis_process(topology.redis_port)
    began = time.monotonic()
    process.kill()
    process.wait()
    time.sleep(run.timing.outage)
    topology.start_redis()
    return began, time.monotonic(), {"down (s)": run.timing.outage}


def redis_pause(run: Run) -> tuple[float, float, dict[str, Any]]:
    """``CLIENT PAUSE <outage> ALL``: Redis accepts connections and answers nothing."""
    milliseconds = int(run.timing.outage * 1000)
    began = time.monotonic()
    command(run.topology.redis_port, "CLIENT", "PAUSE", str(milliseconds), "ALL")
    time.sleep(run.timing.outage)
    return began, time.monotonic(), {"paused (ms)": milliseconds}


def redis_blackhole(run: Run) -> tuple[float, float, dict[str, Any]]:
    """The proxy between the instances and Redis relays nothing for the outage (no reset,
    no close: bytes wait), then heals."""
    assert run.proxy is not None
    began = time.monotonic()
    run.proxy.blackhole(True)
    time.sleep(run.timing.outage)
    run.proxy.blackhole(False)
    return began, time.monotonic(), {"blackholed (s)": run.timing.outage}


def worker_kill(run: Run) -> tuple[float, float, dict[str, Any]]:
    """SIGKILL one signing worker of the first instance; wait until it has a replacement."""
    topology = run.topology
    member = topology.members[0]
    pid = topology.pid(member.name)
    workers = _children(pid)
    began = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)
    replaced = None
    while time.monotonic() - began < 30:
        now = _children(pid)
        if workers[0] not in now and len(now) >= len(workers):
            replaced = time.monotonic() - began
            break
        time.sleep(0.02)
    return began, time.monotonic(), {"worker replaced after (s)": _round(replaced)}


def http_process_kill(run: Run) -> tuple[float, float, dict[str, Any]]:
    """SIGKILL one HTTP process of the first instance (``processes = 2``) while a second
    load opens a new connection per request straight to that instance: how long a new
    connection waits, and how long until the supervisor has a replacement serving."""
    topology = run.topology
    member = topology.members[0]
    supervisor = topology.pid(member.name)
    children = [c for c in _children(supervisor) if _children(c)]  # HTTP processes
    direct = Load(
        member.url,
        run.load.api_key,
        run.load.v1_keys,
        run.load.v2_secret,
        rate=DIRECT_RATE,
        fresh_connections=True,
    ).start()
    time.sleep(1.0)
    began = time.monotonic()
    os.kill(children[0], signal.SIGKILL)
    replaced = None
    while time.monotonic() - began < 30:
        now = [c for c in _children(supervisor) if _children(c)]
        if children[0] not in now and len(now) == len(children):
            replaced = time.monotonic() - began
            break
        time.sleep(0.02)
    ended = time.monotonic()
    time.sleep(min(run.timing.after, 3.0))
    direct.stop()
    after = [s for s in direct.samples if s.at >= began]
    slowest = max((s.latency for s in after), default=0.0)
    return (
        began,
        ended,
        {
            "replacement up after (s)": _round(replaced),
            "new connections to it: sent": len(after),
            "failed": sum(1 for s in after if s.failure),
            "slowest (s)": _round(slowest),
            "over 1 s": sum(1 for s in after if s.latency > 1.0),
        },
    )


def rolling_restart(run: Run) -> tuple[float, float, dict[str, Any]]:
    """Each instance in turn: SIGTERM, wait for its exit (it drains), start it again and
    wait for /readyz before the next one."""
    topology = run.topology
    began = time.monotonic()
    drains = []
    for member in topology.members:
        drains.append(topology.stop_instance(member))
        topology.start_instance(member)
        topology.wait_instance(member, time.monotonic() + 60)
    return began, time.monotonic(), {"longest drain (s)": _round(max(drains))}


def key_rotation(run: Run) -> tuple[float, float, dict[str, Any]]:
    """A new v1 key under a new version, the old one kept as previous; SIGHUP to every
    instance; until every instance names the new version."""
    topology = run.topology
    began = time.monotonic()
    version = topology.rotate_v1_key(lambda: run.load.refresh_keys(topology.public_keys()))
    done = None
    while time.monotonic() - began < 30:
        if all(_key_version(m.url, run.load.api_key) == version for m in topology.members):
            done = time.monotonic() - began
            break
        time.sleep(0.1)
    return began, time.monotonic(), {"every instance on the new key after (s)": _round(done)}


FAULTS: dict[str, Fault] = {
    "worker-kill": Fault("signing worker SIGKILLed", "cluster", worker_kill),
    "key-rotation": Fault("SIGHUP key rotation, every instance", "cluster", key_rotation),
    "rolling-restart": Fault("rolling SIGTERM restart behind nginx", "cluster", rolling_restart),
    "cluster-master-kill": Fault("Redis Cluster master SIGKILLed", "cluster", cluster_master_kill),
    "http-process-kill": Fault(
        "HTTP process SIGKILLed (processes = 2)", "standalone", http_process_kill
    ),
    "redis-pause": Fault("Redis frozen: CLIENT PAUSE ALL", "standalone", redis_pause),
    "redis-blackhole": Fault(
        "Redis blackholed (proxy relays nothing)", "standalone", redis_blackhole
    ),
    "redis-kill": Fault("standalone Redis SIGKILLed, restarted", "standalone", redis_kill),
}


# --------------------------------------------------------------------------- running


def run_faults(
    names: list[str],
    *,
    short: bool,
    rate: float,
    instances: int,
    say: Callable[[str], None] = print,
) -> list[Result]:
    """Run the faults named (in :data:`FAULTS` order), each kind on a topology of its own
    in a temp dir, removed afterwards."""
    timing = Timing.of(short)
    results: list[Result] = []
    for kind in ("cluster", "standalone"):
        chosen = [n for n in FAULTS if n in names and FAULTS[n].kind == kind]
        if not chosen:
            continue
        directory = Path(tempfile.mkdtemp(prefix=f"faults-{kind}-"))
        topology = Topology(
            directory,
            instances=instances,
            processes=2 if kind == "standalone" else 1,
            standalone=kind == "standalone",
            through_proxy=kind == "standalone",
        )
        topology.procs.directories.append(directory)
        say(f"faults: starting a {kind} topology in {directory} ...")
        try:
            topology.start()
            for name in chosen:
                run = Run(topology, _load(topology, rate), timing, topology.proxy)
                results.append(_one(name, run, say))
        finally:
            topology.stop()
    return results


def _load(topology: Topology, rate: float) -> Load:
    return Load(
        topology.url,
        topology.api_key_file.read_text().strip(),
        topology.public_keys(),
        topology.keys["v2_secret"],
        rate=rate,
    )


def _one(name: str, run: Run, say: Callable[[str], None]) -> Result:
    fault = FAULTS[name]
    say(f"faults: {name}: {fault.title} ...")
    run.load.start()
    time.sleep(run.timing.before)
    began, ended, notes = fault.act(run)
    time.sleep(run.timing.after)
    run.load.stop()
    samples = run.load.samples
    before = [s for s in samples if s.at < began]
    during = [s for s in samples if began <= s.at <= ended]
    after = [s for s in samples if s.at > ended]
    baseline = p99(before) or 1.0
    failures = dict(run.load.failures)
    result = Result(
        name=name,
        title=fault.title,
        sent=len(samples),
        failed=sum(1 for s in samples if s.failure),
        bad_tokens=sum(n for kind, n in failures.items() if kind not in TRANSPORT),
        failures=failures,
        p99_ms=(p99(before), p99(during), p99(after)),
        recovery_s=recovery(samples, ended, baseline),  # from the fault's end
        notes={
            "fault lasted (s)": _round(ended - began),
            **notes,
            **_refill(samples, began, ended),
        },
        details=run.load.details,
    )
    say(f"faults: {name}: {result.row()}")
    return result


def _refill(samples: list[Sample], began: float, ended: float) -> dict[str, float | int | None]:
    """What the time to recover is made of: a token minted while Redis was away is not in
    the cache after it, so its userid's next request signs again (a cold mint, slower than
    a hit). Given: the answers signed afresh in the 10 s after the fault, and the time to
    recover of the cache hits alone (failures included)."""
    after = [s for s in samples if ended < s.at <= ended + 10]
    baseline = p99([s for s in samples if s.at < began and s.cached]) or 1.0
    hits = [s for s in samples if s.cached or s.failure]
    return {
        "signed afresh in the 10 s after": sum(1 for s in after if not s.cached and not s.failure),
        "hits' recovery (s)": _round(recovery(hits, ended, baseline)),
    }


def report(results: list[Result], *, short: bool, rate: float, instances: int) -> str:
    """The Markdown section appended to docs/RELIABILITY.md."""
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    day = datetime.date.today().isoformat()
    lines = [
        "",
        f"### Fault suite run, {day}, commit {revision}" + (" (short)" if short else ""),
        "",
        f"`bash deploy/local/faults {' '.join(r.name for r in results)}`: {instances} "
        f"instances behind nginx, {rate:.0f} POST /v1/usersig a second (80 % v1, 20 % v2, "
        "2,000 userids), every token verified against the key its `key_version` names.",
        "",
        "| fault | requests | failed | bad tokens | p99 ms before / during / after | "
        "recovery s after it | notes |",
        "|---|---|---|---|---|---|---|",
        *(r.row() for r in results),
        "",
    ]
    return "\n".join(lines)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` but multiprocessing's resource tracker."""
    return sorted(
        p
        for p in descendants([pid])
        if p != pid and _parent(p) == pid and b"resource_tracker" not in _cmdline(p)
    )


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _key_version(url: str, api_key: str) -> str | None:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{url}/v1/usersig",
        data=json.dumps({"sdkappid": 1400000001, "userid": f"probe-{time.time_ns()}"}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (loopback)
            return str(json.loads(answer.read())["key_version"])
    except OSError:
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="deploy/local/faults", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="faults to run (default all)")
    parser.add_argument("--list", action="store_true", help="name the faults and exit")
    parser.add_argument("--short", action="store_true", help="the test suite's short version")
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second (200)")
    parser.add_argument("--instances", type=int, default=3, help="signer instances (3)")
    parser.add_argument(
        "--no-report", action="store_true", help="do not append to docs/RELIABILITY.md"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, fault in FAULTS.items():
            print(f"{name:20} {fault.title} ({fault.kind} topology)")
        return 0
    unknown = sorted(set(args.names) - set(FAULTS))
    if unknown:
        parser.error(f"unknown fault {', '.join(unknown)}: --list names them")
    if not 1 <= args.rate <= 5000 or not 2 <= args.instances <= 8:
        parser.error("--rate must be 1..5000 and --instances 2..8")
    results = run_faults(
        args.names or list(FAULTS), short=args.short, rate=args.rate, instances=args.instances
    )
    section = report(results, short=args.short, rate=args.rate, instances=args.instances)
    print(section)
    if not args.no_report:
        with REPORT.open("a") as handle:
            handle.write(section)
        print(f"faults: appended to {REPORT}")
    return 0 if all(r.failed == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
