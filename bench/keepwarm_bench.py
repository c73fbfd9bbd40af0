"""Keep-warm's costs (issue 15): Redis bytes per tracked user, CPU per re-sign, and what a
background re-sign load adds to a live request's latency in the engine.

    .venv/bin/python bench/keepwarm_bench.py [--users 100000] [--resigns 5000] [--live 2000]

In one run, against one redis-server started here, on this machine's cores:
  memory    INFO used_memory after recording --users users (a due entry and a seen entry
            each, as a stored token with keep-warm on records them), minus before
  re-sign   --resigns tokens issued, the clock moved into their re-sign window, keep-warm
            passes until every one is re-signed: CPU of this process and of the signing
            worker (/proc), per re-sign, v1 P-256 and v2
  latency   --live single live requests one after another (2 ms apart) through a real
            engine of 1 worker, alone and while a background job of re-signs is queued
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from signer.cache import AppPolicy, TokenIssuer  # noqa: E402
from signer.cache.backends.redis import RedisCache  # noqa: E402
from signer.cache.base import WarmMark  # noqa: E402
from signer.cache.keepwarm import KeepWarm, Pace  # noqa: E402
from signer.core import Curve, HmacSecret, generate_private_key  # noqa: E402
from signer.engine import AppKey, Engine, EngineSettings, KeySet, SignRequest  # noqa: E402
from tests.support import RedisServer  # noqa: E402

V1, V2 = 1400000001, 1400000002
DAY = 86400
TICKS = os.sysconf("SC_CLK_TCK")


def keyset() -> KeySet:
    return KeySet.of(
        [
            AppKey.from_private_key(V1, generate_private_key(Curve.P256)),
            AppKey.from_secret(V2, HmacSecret(b"keep-warm-bench")),
        ]
    )


def used_memory(server: RedisServer) -> int:
    for line in server.cli("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory")


async def memory(server: RedisServer, users: int) -> None:
    cache = RedisCache.from_url(server.url, timeout=2.0)
    before = used_memory(server)
    now_ms = int(time.time() * 1000)
    for start in range(0, users, 5000):
        cache.track(
            [
                WarmMark(V1, f"user_{n}", DAY, now_ms + n, now_ms, 3 * DAY * 1000)
                for n in range(start, min(users, start + 5000))
            ]
        )
        await cache.flush()
    after = used_memory(server)
    due = server.cli("MEMORY", "USAGE", f"signer:kw:{{kw:{V1}}}:due")
    seen = server.cli("MEMORY", "USAGE", f"signer:kw:{{kw:{V1}}}:seen")
    print(
        f"memory: {users} users tracked, {(after - before) / users:.1f} B per user "
        f"(used_memory); MEMORY USAGE due {int(due) / users:.1f} B + seen "
        f"{int(seen) / users:.1f} B per user"
    )
    await cache.close()


def worker_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def resigns(server: RedisServer, count: int, sdkappid: int, name: str) -> None:
    server.cli("FLUSHALL")
    clock = Clock()
    policy = AppPolicy(sdkappid, "1", 3600, refresh_ahead=7200, keep_warm=3 * DAY)
    cache = RedisCache.from_url(server.url, timeout=2.0)
    cache.clock = clock
    async with Engine(keyset(), EngineSettings(workers=1)) as engine:
        issuer = TokenIssuer(engine, cache, clock=clock)
        await issuer.issue_many(policy, [f"u{n}" for n in range(count)], DAY)
        await cache.flush()
        warm = KeepWarm(lambda: issuer, cache.warm, lambda: [policy], Pace, cache.healthy)
        clock.now += DAY - 3600 - 60  # a minute before every token's end: all due
        pids = engine.worker_pids()
        assert server.process is not None
        redis0 = worker_cpu([server.process.pid])
        cpu0, work0, wall0 = time.process_time(), worker_cpu(pids), time.perf_counter()
        while warm.stats.resigned[sdkappid] + warm.stats.skipped[sdkappid] < count:
            if not await warm.tick(512):
                break
        await cache.flush()
        cpu = time.process_time() - cpu0
        work = worker_cpu(pids) - work0
        wall = time.perf_counter() - wall0
        redis = worker_cpu([server.process.pid]) - redis0
    done = warm.stats.resigned[sdkappid]
    print(
        f"re-sign {name}: {done} re-signed in {wall:.2f} s; CPU per re-sign "
        f"{1e6 * (cpu + work) / done:.0f} µs ({1e6 * cpu / done:.0f} µs event loop + Redis "
        f"client, {1e6 * work / done:.0f} µs signing worker); redis-server "
        f"{1e6 * redis / done:.0f} µs"
    )
    await cache.close()


async def latency(live: int, background: int) -> list[float]:
    async with Engine(keyset(), EngineSettings(workers=1, max_queued=200_000)) as engine:
        await engine.sign_many([SignRequest(V1, f"w{n}") for n in range(200)])
        job = None
        if background:
            requests = [SignRequest(V1, f"bg{n}") for n in range(background)]
            job = asyncio.ensure_future(engine.sign_many(requests, background=True))
        seconds = []
        for n in range(live):
            start = time.perf_counter()
            await engine.sign(SignRequest(V1, f"live{n}"))
            seconds.append(time.perf_counter() - start)
            await asyncio.sleep(0.002)
        still = 0 if job is None else engine.stats.queue_depth
        if job is not None:
            await job
    if background:
        print(f"  (background still queued when the live run ended: {still})")
    return seconds


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[int(0.99 * len(ordered)) - 1]
    p999 = ordered[int(0.999 * len(ordered)) - 1]
    return (
        f"p50 {1e3 * statistics.median(ordered):.2f} ms, p99 {1e3 * p99:.2f} ms, "
        f"p99.9 {1e3 * p999:.2f} ms, "
        f"max {1e3 * ordered[-1]:.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--resigns", type=int, default=5000)
    parser.add_argument("--live", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory) / "redis").start()
        try:
            await memory(server, args.users)
            await resigns(server, args.resigns, V1, "v1 P-256")
            await resigns(server, args.resigns, V2, "v2")
        finally:
            server.stop()
    alone = await latency(args.live, 0)
    print(f"latency, live alone: {summary(alone)}")
    loaded = await latency(args.live, 150_000)
    print(f"latency, live with background re-signs queued: {summary(loaded)}")


if __name__ == "__main__":
    asyncio.run(main())
