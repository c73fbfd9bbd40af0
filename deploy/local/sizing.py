"""Sizing figures for docs/OPERATIONS.md, measured on a local topology (one instance, one
HTTP process, one signing worker, a standalone Redis):

    .venv/bin/python -m deploy.local.sizing [--rate R] [--seconds S]

- Redis bytes per cached token: ``used_memory`` before and after 20,000 tokens of each
  app are minted (POST /v1/usersig/batch), over 20,000;
- CPU per 1,000 tokens/s: the CPU seconds (user + system, from /proc) of the instance and
  its signing worker, and of Redis, over the tokens served at a steady ``rate``, for cold
  mints (a new userid each time) and warm hits (userids already cached), per app.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from deploy.local.config import V1_APP, V2_APP
from deploy.local.load import Load, p99
from deploy.local.processes import descendants
from deploy.local.redis import command, parse_info
from deploy.local.topology import Topology

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their descendants, as /proc has them."""
    total = 0
    for pid in descendants(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def used_memory(port: int) -> int:
    return int(parse_info(command(port, "INFO", "memory").decode())["used_memory"])


def mint(url: str, api_key: str, sdkappid: int, prefix: str, count: int) -> None:
    for start in range(0, count, 1000):
        body = {
            "sdkappid": sdkappid,
            "userids": [f"{prefix}{n}" for n in range(start, start + 1000)],
        }
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{url}/v1/usersig/batch",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            assert answer.status == 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="sizing-"))
    topology = Topology(directory, instances=1, standalone=True)
    topology.procs.directories.append(directory)
    figures: dict[str, object] = {}
    try:
        topology.start()
        member = topology.members[0]
        api_key = topology.api_key_file.read_text().strip()
        redis_pid = topology.redis_process(topology.redis_port)[1].pid
        signer_pid = topology.pid(member.name)
        count = 20_000
        for name, app in (("v1", V1_APP), ("v2", V2_APP)):
            before = used_memory(topology.redis_port)
            mint(member.url, api_key, app, f"size-{name}-", count)
            time.sleep(1.0)  # the writes go after the answers
            figures[f"redis_bytes_per_token_{name}"] = round(
                (used_memory(topology.redis_port) - before) / count
            )
        for name, share in (("v1", 1.0), ("v2", 0.0)):
            app = V1_APP if share else V2_APP
            mint(member.url, api_key, app, f"warm-{name}-", 2000)
            for phase, users, prefix in (
                ("cold", 10**12, f"cold-{name}-"),
                ("warm", 2000, f"warm-{name}-"),
            ):
                load = Load(
                    member.url,
                    api_key,
                    topology.public_keys(),
                    topology.keys["v2_secret"],
                    rate=args.rate,
                    users=users,
                    v1_share=share,
                    prefix=prefix,
                )
                cpu = cpu_seconds([signer_pid]), cpu_seconds([redis_pid])
                load.start()
                time.sleep(args.seconds)
                load.stop()
                served = sum(1 for s in load.samples if not s.failure)
                signer_cpu = cpu_seconds([signer_pid]) - cpu[0]
                redis_cpu = cpu_seconds([redis_pid]) - cpu[1]
                figures[f"{name}_{phase}"] = {
                    "tokens": served,
                    "failed": len(load.samples) - served,
                    "req_per_s": round(served / args.seconds),
                    "p99_ms": round(p99(load.samples) or 0, 1),
                    "signer_cpu_s_per_1k": round(1000 * signer_cpu / max(served, 1), 3),
                    "redis_cpu_s_per_1k": round(1000 * redis_cpu / max(served, 1), 3),
                }
                print(name, phase, figures[f"{name}_{phase}"], flush=True)
        figures["redis_keys"] = int(command(topology.redis_port, "DBSIZE").decode().strip()[1:])
    finally:
        topology.stop()
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
