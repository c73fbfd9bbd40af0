"""Token latency while a caller logs users out: `signer serve` with 100k cached tokens.

    .venv/bin/python bench/evict_load.py [--seconds 10] [--users 100000] [--rate 100]
                                         [--source DIR]

In one run, against one `signer serve` (dev mode: v1 P-256 app, in-memory cache of 100k
entries, rate limit off) warmed with --users cached tokens:
  quiet      POST /v1/usersig for cached userids (4 requests in flight) for --seconds
  deletes    the same, while another caller sends --rate DELETE/s (open loop: one every
             1/rate s, whether or not the previous one has answered) for users of the
             other half of the cache, each once
Prints p50/p99 of the token requests in both phases and of the DELETEs. --source runs the
service from another source tree (e.g. `git archive HEAD | tar -x -C DIR`) with this
venv, to compare two versions on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from http_service import free_port, wait_ready  # noqa: E402

SDKAPPID = 1400000001
IN_FLIGHT = 4


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name}: no requests"
    return (
        f"{name}: {len(seconds)} requests, p50 {1000 * statistics.median(seconds):.1f} ms, "
        f"p99 {1000 * percentile(seconds, 0.99):.1f} ms, max {1000 * max(seconds):.1f} ms"
    )


async def warm(http: aiohttp.ClientSession, url: str, users: int) -> None:
    for start in range(0, users, 5000):
        ids = [f"warm_{n}" for n in range(start, min(users, start + 5000))]
        async with http.post(
            f"{url}/v1/usersig/batch", json={"sdkappid": SDKAPPID, "userids": ids}
        ) as response:
            response.raise_for_status()
            await response.read()


async def tokens(
    http: aiohttp.ClientSession, url: str, users: int, until: float, out: list[float]
) -> None:
    """One connection's worth of token requests for cached userids (the first half)."""
    n = 0
    while time.monotonic() < until:
        n += 7919  # a prime stride: userids all over the cache, not its hot end
        body = {"sdkappid": SDKAPPID, "userid": f"warm_{n % (users // 2)}"}
        start = time.perf_counter()
        async with http.post(f"{url}/v1/usersig", json=body) as response:
            data = await response.json()
        out.append(time.perf_counter() - start)
        assert response.status == 200 and data["cached"], data


async def deletes(
    http: aiohttp.ClientSession, url: str, users: int, rate: float, until: float, out: list[float]
) -> None:
    """``rate`` DELETE/s for users of the second half of the cache, each once."""

    async def one(userid: str) -> None:
        start = time.perf_counter()
        async with http.delete(f"{url}/v1/usersig/{SDKAPPID}/{userid}") as response:
            await response.read()
        out.append(time.perf_counter() - start)
        assert response.status == 200, response.status

    pending = []
    n = 0
    next_at = time.monotonic()
    while next_at < until:
        pending.append(asyncio.ensure_future(one(f"warm_{users // 2 + n % (users // 2)}")))
        n += 1
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.gather(*pending)


async def phase(url: str, users: int, seconds: float, rate: float) -> tuple[list[float], ...]:
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT + 200)
    async with aiohttp.ClientSession(connector=connector) as http:
        until = time.monotonic() + seconds
        token_times: list[float] = []
        delete_times: list[float] = []
        work = [tokens(http, url, users, until, token_times) for _ in range(IN_FLIGHT)]
        if rate:
            work.append(deletes(http, url, users, rate, until, delete_times))
        await asyncio.gather(*work)
    return token_times, delete_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--source", type=Path, help="run the service from this source tree")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    env["SIGNER_RATE_LIMIT__ENABLED"] = "false"
    env["SIGNER_SERVER__LOG_LEVEL"] = "warning"
    if args.source:
        env["PYTHONPATH"] = str(args.source.resolve())
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "signer", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
        cwd=args.source or None,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", server)

        async def run() -> None:
            async with aiohttp.ClientSession() as http:
                await warm(http, url, args.users)
            quiet, _ = await phase(url, args.users, args.seconds, 0)
            busy, gone = await phase(url, args.users, args.seconds, args.rate)
            print(f"service from {args.source or HERE.parent}, {args.users:,} cached tokens")
            print(summary("  tokens, quiet", quiet))
            print(summary(f"  tokens, {args.rate:g} DELETE/s", busy))
            print(summary("  DELETEs", gone))

        asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
