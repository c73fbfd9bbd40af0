"""What hostile connection patterns do to a running signer (figures for docs/RELIABILITY.md).

    python bench/connections.py slowloris --url http://127.0.0.1:8080 [--connections 500]
                                          [--interval 3] [--seconds 60]
    python bench/connections.py flood --url http://127.0.0.1:8080 [--connections 10000]
                                      [--seconds 60] [--processes 4]

slowloris: every connection sends a request line and then one header byte every
``interval`` seconds, never finishing its headers; reports how many the server still holds
open after ``seconds`` (and how many it answered 408).
flood: ``connections`` clients (spread over ``processes`` client processes, so that they
really arrive together) connect at once and each sends one GET /healthz; reports how many
got an answer within ``seconds``, by status, how many got none, and the time to an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import time
from urllib.parse import urlsplit


async def _slow_client(host: str, port: int, interval: float, seconds: float) -> str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return "connect failed"
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(1024), interval)
            except TimeoutError:
                writer.write(b"a")
                await writer.drain()
                continue
            if not data:
                return "closed silently"
            return "answered " + data.split(b" ", 2)[1].decode()
        return "still open"
    except OSError:
        return "reset"
    finally:
        writer.close()


async def _one_request(host: str, port: int, seconds: float) -> tuple[str, float]:
    started = time.monotonic()
    outcome = await _answer(host, port, seconds)
    return outcome, time.monotonic() - started


async def _answer(host: str, port: int, seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            line = await reader.readline()
            writer.close()
    except TimeoutError:
        return "no answer"
    except OSError as exc:
        return f"error {type(exc).__name__}"
    return line.split(b" ", 2)[1].decode() if line else "closed silently"


def _flood_part(host: str, port: int, count: int, seconds: float) -> list[tuple[str, float]]:
    async def run() -> list[tuple[str, float]]:
        return await asyncio.gather(*(_one_request(host, port, seconds) for _ in range(count)))

    return asyncio.run(run())


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pattern", choices=["slowloris", "flood"])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    started = time.monotonic()
    if args.pattern == "slowloris":
        count = args.connections or 500
        jobs = [_slow_client(host, port, args.interval, args.seconds) for _ in range(count)]
        outcomes = collections.Counter(await asyncio.gather(*jobs))
        print(f"slowloris: {count} connections, {time.monotonic() - started:.1f} s")
    else:
        count = args.connections or 10_000
        share = count // args.processes
        with concurrent.futures.ProcessPoolExecutor(args.processes) as pool:
            futures = [
                pool.submit(_flood_part, host, port, share, args.seconds)
                for _ in range(args.processes)
            ]
            parts = [future.result() for future in futures]
            results = [result for part in parts for result in part]
        outcomes = collections.Counter(outcome for outcome, _ in results)
        answered = [took for outcome, took in results if outcome.isdigit()]
        print(
            f"flood: {len(results)} connections from {args.processes} processes, "
            f"{time.monotonic() - started:.1f} s; time to an answer p50 "
            f"{_percentile(answered, 0.5):.2f} s, p99 {_percentile(answered, 0.99):.2f} s, "
            f"max {max(answered, default=0):.2f} s"
        )
    for outcome, number in outcomes.most_common():
        print(f"  {outcome}: {number}")


if __name__ == "__main__":
    asyncio.run(main())
