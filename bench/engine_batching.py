"""Engine throughput by batch size, against the naive loop and per-item run_in_executor.

    .venv/bin/python bench/engine_batching.py [--tokens 20000] [--clients 256]

Load model: ``--clients`` coroutines each send ``engine.sign`` requests one after another
(what an HTTP server with that many requests in flight does), v1 P-256, distinct userids.
Baselines measured in the same run:
  naive loop        one process signing in a plain loop over `cryptography` (see core_rates)
  per-item executor the same spawn pool and worker code, one run_in_executor call per token
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))

from core_rates import case_naive_v1

from signer.core import Curve, generate_private_key
from signer.engine import (
    AppKey,
    Engine,
    EngineSettings,
    KeySet,
    SignRequest,
    worker,
)
from signer.engine.pool import START_METHOD

SDKAPPID = 1400000001


async def drive(sign, tokens: int, clients: int) -> tuple[float, list[float]]:
    """Run ``tokens`` requests from ``clients`` sequential senders; (seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(tokens))

    async def client() -> None:
        for n in counter:
            start = time.perf_counter()
            await sign(SignRequest(SDKAPPID, f"user_{n}", 86400))
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def engine_case(keyset: KeySet, batch: int, tokens: int, clients: int) -> dict[str, float]:
    settings = EngineSettings(workers=os.cpu_count() or 1, max_batch=batch)
    async with Engine(keyset, settings) as engine:
        await drive(engine.sign, 500, clients)  # warm
        seconds, lat = await drive(engine.sign, tokens, clients)
        mean_batch = engine.stats.batch_items / max(engine.stats.batches, 1)
    return {"rate": tokens / seconds, "p50": pct(lat, 50), "p99": pct(lat, 99), "batch": mean_batch}


async def v2_case(inline_max: int, tokens: int, clients: int) -> dict[str, float]:
    """v2 singles signed inline on the loop (the default) or sent to the pool."""
    from signer.core import HmacSecret

    keyset = KeySet.of([AppKey.from_secret(SDKAPPID, HmacSecret(b"bench-secret"))])
    settings = EngineSettings(workers=os.cpu_count() or 1, inline_v2_max=inline_max)
    async with Engine(keyset, settings) as engine:
        await drive(engine.sign, 500, clients)
        seconds, lat = await drive(engine.sign, tokens, clients)
    return {"rate": tokens / seconds, "p50": pct(lat, 50), "p99": pct(lat, 99), "batch": 0.0}


async def per_item_case(keyset: KeySet, tokens: int, clients: int) -> dict[str, float]:
    import multiprocessing

    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(
        max_workers=os.cpu_count() or 1,
        mp_context=multiprocessing.get_context(START_METHOD),
        initializer=worker.initialize,
        initargs=(keyset,),
    )

    async def sign(request: SignRequest) -> object:
        return (await loop.run_in_executor(pool, worker.sign_batch, [request]))[0]

    try:
        await drive(sign, 500, clients)
        seconds, lat = await drive(sign, tokens, clients)
    finally:
        pool.shutdown()
    return {"rate": tokens / seconds, "p50": pct(lat, 50), "p99": pct(lat, 99), "batch": 1.0}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=256)
    args = parser.parse_args()
    keyset = KeySet.of([AppKey.from_private_key(SDKAPPID, generate_private_key(Curve.P256))])

    naive = args.tokens / case_naive_v1("prime256v1", args.tokens)
    rows = {"naive loop (1 process)": {"rate": naive, "p50": 0, "p99": 0, "batch": 0}}
    rows["per-item run_in_executor"] = await per_item_case(keyset, args.tokens, args.clients)
    for batch in (1, 8, 64, 256):
        rows[f"engine max_batch={batch}"] = await engine_case(
            keyset, batch, args.tokens, args.clients
        )

    v2_rows = {
        "v2 inline (default)": await v2_case(32, args.tokens, args.clients),
        "v2 through the pool": await v2_case(0, args.tokens, args.clients),
    }
    base = rows["per-item run_in_executor"]["rate"]
    print(
        f"{args.tokens} v1 P-256 tokens, {args.clients} concurrent clients, "
        f"{os.cpu_count()} workers\n"
    )
    print(
        f"{'case':28} {'tokens/s':>9} {'x naive':>8} {'x per-item':>10} "
        f"{'mean batch':>10} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for name, r in rows.items():
        print(
            f"{name:28} {r['rate']:9,.0f} {r['rate'] / naive:8.2f} {r['rate'] / base:10.2f} "
            f"{r['batch']:10.1f} {r['p50']:7.2f} {r['p99']:7.2f}"
        )
    print(f"\n{'v2 (HMAC) singles':28} {'tokens/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for name, r in v2_rows.items():
        print(f"{name:28} {r['rate']:9,.0f} {r['p50']:7.2f} {r['p99']:7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
