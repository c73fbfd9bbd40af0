"""The shared Redis cache: warm-hit throughput, warm batches, bytes per cached token.

    .venv/bin/python bench/cache_bench.py [--seconds 15] [--users 50000] [--memory-users 1000000]
                                         [--processes 2]
    .venv/bin/python bench/cache_bench.py --only-memory [--memory-users 1000000]

In one run, against one redis-server started here:
  bare GET handler   bench/bare_redis_server.py: aiohttp+uvloop, one redis-py GET per request
  warm POST          `signer serve` ([cache] url = redis, L1 off, rate limit off), every
                     userid already cached, a different userid on each request; once with
                     one HTTP process, once with `--processes` ([server] processes)
  warm batch 1000    POST /v1/usersig/batch of 1000 cached userids (tokens/s)
  memory             MEMORY/INFO of Redis after caching --memory-users v1 P-256 tokens
wrk: 1 thread, 64 connections (4 for batches), on the same 2 cores as everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from http_service import SIGNER, free_port, wait_ready, wrk  # noqa: E402

from tests.support import RedisServer  # noqa: E402

WARM_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"sdkappid":1400000001,"userid":"warm_%%d"}', counter %% %(users)d)
  return wrk.format("POST", "/v1/usersig", {["Content-Type"] = "application/json"}, body)
end
"""

BATCH_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  local ids = {}
  local base = (counter * 1000) %% (%(users)d - 1000)
  for i = 1, 1000 do ids[i] = string.format('"warm_%%d"', base + i) end
  local body = '{"sdkappid":1400000001,"userids":[' .. table.concat(ids, ",") .. ']}'
  return wrk.format("POST", "/v1/usersig/batch", {["Content-Type"] = "application/json"}, body)
end
"""


def warm(url: str, users: int) -> None:
    with httpx.Client(timeout=120) as http:
        for start in range(0, users, 5000):
            ids = [f"warm_{n}" for n in range(start, min(users, start + 5000))]
            r = http.post(f"{url}/v1/usersig/batch", json={"sdkappid": 1400000001, "userids": ids})
            r.raise_for_status()


async def fill_memory(redis_url: str, count: int) -> float:
    """Cache ``count`` v1 P-256 tokens the way the service does; bytes of Redis per token."""
    from signer.cache.backends.redis import RedisCache
    from signer.cache.base import CachedToken, CacheKey
    from signer.core import Curve, generate_private_key
    from signer.engine import AppKey, Engine, EngineSettings, KeySet, SignRequest

    cache = RedisCache.from_url(redis_url, timeout=5.0)
    await cache.client.flushall()
    before = int((await cache.client.info("memory"))["used_memory"])
    keys = KeySet.of([AppKey.from_private_key(1400000001, generate_private_key(Curve.P256))])
    async with Engine(keys, EngineSettings(max_queued=200_000)) as engine:
        for start in range(0, count, 10_000):
            requests = [
                SignRequest(1400000001, f"user_{n}", 15552000)
                for n in range(start, min(count, start + 10_000))
            ]
            tokens = await engine.sign_many(requests)
            items = []
            for token in tokens:
                key = CacheKey(1400000001, "1~01234567", 15552000, "", token.userid)  # type: ignore[union-attr]
                entry = CachedToken(
                    token.usersig,
                    token.userid,
                    token.sdkappid,
                    token.issued_at,  # type: ignore[union-attr]
                    token.expires_at,
                    "1",
                )  # type: ignore[union-attr]
                items.append((key, entry, 15552000 - 3600))
            await cache.set_many(items, wait=True)
    after = int((await cache.client.info("memory"))["used_memory"])
    sample = await cache.client.memory_usage(
        cache.key(CacheKey(1400000001, "1~01234567", 15552000, "", "user_12345"))
    )
    # Value sizes of a random sample (not every n-th userid: round numbers compress better).
    pipe = cache.client.pipeline(transaction=False)
    for n in random.Random(6).sample(range(count), min(count, 10_000)):
        pipe.strlen(cache.key(CacheKey(1400000001, "1~01234567", 15552000, "", f"user_{n}")))
    lengths = await pipe.execute()
    await cache.close()
    print(f"  MEMORY USAGE of one cached token: {sample} bytes")
    small = sum(1 for length in lengths if length <= 252)
    print(
        f"  values of <= 252 bytes (jemalloc's 256-byte class, else 320): "
        f"{100 * small / len(lengths):.1f} % of {len(lengths):,} sampled, "
        f"{min(lengths)}-{max(lengths)} bytes"
    )
    return (after - before) / count


def only_memory(users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            per_token = asyncio.run(fill_memory(redis.url, users))
        finally:
            redis.stop()
    print(f"Redis bytes per cached v1 token at {users:,} users: {per_token:.0f} (target <= 450)")


def measure_signer(
    env: dict[str, str], args: argparse.Namespace, batches: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Warm POSTs (and batches) against a fresh `signer serve` whose tokens are cached."""
    port = free_port()
    server = subprocess.Popen(
        [SIGNER, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz")
        warm(url, args.users)
        lua = WARM_LUA % {"users": args.users}
        wrk(f"{url}/v1/usersig", lua, 2, 64)
        hits = wrk(f"{url}/v1/usersig", lua, args.seconds, 64)
        batch = {"rate": float("nan"), "p99_ms": float("nan"), "errors": 0.0}
        if batches:
            batch_lua = BATCH_LUA % {"users": args.users}
            batch = wrk(f"{url}/v1/usersig/batch", batch_lua, args.seconds, 4)
    finally:
        server.terminate()
        server.wait()
    return hits, batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--processes", type=int, default=2, help="[server] processes")
    parser.add_argument("--memory-users", type=int, default=1_000_000)
    parser.add_argument(
        "--only-memory", action="store_true", help="measure bytes per cached token only"
    )
    args = parser.parse_args()
    if args.only_memory:
        only_memory(args.memory_users)
        return
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            port = free_port()
            bare = subprocess.Popen(
                [sys.executable, str(HERE / "bare_redis_server.py"), str(port), redis.url]
            )
            try:
                wait_ready(f"http://127.0.0.1:{port}/")
                for n in range(args.users):
                    if n % 5000 == 0:
                        pipe = ["redis-cli", "-p", str(redis.port)]
                        keys = [
                            x
                            for i in range(n, min(args.users, n + 5000))
                            for x in (f"bare:warm_{i}", "x" * 300)
                        ]
                        subprocess.run([*pipe, "MSET", *keys], check=True, capture_output=True)
                lua = WARM_LUA % {"users": args.users}
                wrk(f"http://127.0.0.1:{port}/v1/usersig", lua, 2, 64)
                bare_result = wrk(f"http://127.0.0.1:{port}/v1/usersig", lua, args.seconds, 64)
            finally:
                bare.terminate()
                bare.wait()

            env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
            env.update(
                {
                    "SIGNER_RATE_LIMIT__ENABLED": "false",
                    "SIGNER_SERVER__LOG_LEVEL": "warning",
                    "SIGNER_CACHE__URL": redis.url,
                    "SIGNER_CACHE__L1_ENTRIES": "0",
                }
            )
            single, _ = measure_signer(env, args, batches=False)
            env["SIGNER_SERVER__PROCESSES"] = str(args.processes)
            hits, batch = measure_signer(env, args, batches=True)
            per_token = asyncio.run(fill_memory(redis.url, args.memory_users))
        finally:
            redis.stop()
    print(f"\nwrk -t1 -c64 -d{args.seconds}s (batches: -c4); {args.users} warm userids\n")
    print(
        f"bare handler, one GET/request : {bare_result['rate']:9,.0f} req/s  p99 {bare_result['p99_ms']:.2f} ms"
    )
    print(
        f"warm POST, 1 process          : {single['rate']:9,.0f} req/s  p99 {single['p99_ms']:.2f} ms  "
        f"non-2xx {single['errors']:.0f}  = {single['rate'] / bare_result['rate']:.2f}x bare"
    )
    print(
        f"warm POST, {args.processes} processes        : {hits['rate']:9,.0f} req/s  p99 {hits['p99_ms']:.2f} ms  "
        f"non-2xx {hits['errors']:.0f}  = {hits['rate'] / bare_result['rate']:.2f}x bare (target >= 1.5x)"
    )
    print(
        f"warm batch of 1000, {args.processes} proc.   : {batch['rate'] * 1000:9,.0f} tokens/s  p99 {batch['p99_ms']:.0f} ms  "
        f"(target >= 150k)"
    )
    print(
        f"Redis bytes per cached v1 token at {args.memory_users:,} users: {per_token:.0f} (target <= 450)"
    )


if __name__ == "__main__":
    main()
