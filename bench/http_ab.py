"""Interleaved A/B of `signer serve` configurations under the same cold-mint load.

    .venv/bin/python bench/http_ab.py "base:" "inline:SIGNER_ENGINE__INLINE_V2_MAX=32" \
        [--rounds 6] [--seconds 5] [--connections 64] [--sdkappid 1400000002]

Each variant is ``label:ENV=VALUE,ENV=VALUE`` (an optional ``|DIR`` at the end runs the
checkout in DIR instead, for comparing commits; values may contain ``:`` and ``@``). Every variant's server is started first;
then short wrk runs alternate between them, round after round. On this machine the speed
drifts by ±25 % within minutes, so runs taken one configuration after the other compare
the machine's moods as much as the code; alternating spreads the drift over all variants.
Reports the median req/s and p99 of each, and every run's figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from http_service import free_port, mint_script, wait_ready, wrk

HERE = Path(__file__).parent


def start(spec: str, processes: int) -> tuple[str, str, subprocess.Popen[bytes]]:
    label, _, rest = spec.partition(":")
    settings, _, root = rest.partition("|")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    env.update(
        SIGNER_RATE_LIMIT__ENABLED="false",
        SIGNER_SERVER__LOG_LEVEL="warning",
        SIGNER_SERVER__PROCESSES=str(processes),
    )
    for pair in filter(None, settings.split(",")):
        name, _, value = pair.partition("=")
        env[name] = value
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "signer", "serve", "--port", str(port)],
        cwd=root or HERE.parent,  # `-m` imports the signer package of this directory
        env=env,
        stderr=subprocess.DEVNULL,
    )
    return label, f"http://127.0.0.1:{port}", server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", help="label:ENV=V,ENV=V[|DIR]")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2, help="[server] processes")
    parser.add_argument("--sdkappid", type=int, default=1400000001, help="dev mode: v1 …01, v2 …02")
    args = parser.parse_args()
    script = mint_script(args.sdkappid)
    servers = [start(spec, args.processes) for spec in args.variants]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in servers}
    try:
        for _, url, server in servers:
            wait_ready(f"{url}/readyz", server)
            wrk(f"{url}/v1/usersig", script, 2, args.connections)  # warm
        for _ in range(args.rounds):
            for label, url, _ in servers:
                results[label].append(
                    wrk(f"{url}/v1/usersig", script, args.seconds, args.connections)
                )
    finally:
        for _, _, server in servers:
            server.terminate()
            server.wait()
    print(
        f"cold mints, sdkappid {args.sdkappid}, {args.processes} processes, wrk -t1 "
        f"-c{args.connections}, {args.rounds} alternating rounds of {args.seconds} s\n"
    )
    for label, runs in results.items():
        rates = [run["rate"] for run in runs]
        p99s = [run["p99_ms"] for run in runs]
        print(
            f"{label:14s} median {statistics.median(rates):8,.0f} req/s  "
            f"p99 {statistics.median(p99s):5.2f} ms   runs: "
            + "  ".join(f"{r / 1000:.1f}k/{p:.1f}" for r, p in zip(rates, p99s, strict=True))
        )


if __name__ == "__main__":
    main()
