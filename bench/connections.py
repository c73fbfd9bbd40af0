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

    python bench/connections.py siege --url URL [--connections 10000] [--slow 500]
                                      [--seconds 60] [--api-key-file F] [--state FILE]
                                      [--json FILE]

siege: both at once, for ``seconds``: ``connections`` clients that each get one answer and
then hold their kept-alive connection open and idle, and ``slow`` slowloris clients, while
one well-behaved client asks for a token (``POST /v1/usersig`` with the API key, or GET
/healthz without one) every 50 ms, on a new connection each time, before, during and
after. Reports the held connections still open at the end, the slow ones' fate, the good
client's answers and latency in each stretch, and the peak resident memory of each process
a ``deploy/local`` state file (``--state``) tracks, before and during.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.local.processes import descendants

PROBE_EVERY = 0.05


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


async def _held_client(host: str, port: int, seconds: float) -> str:
    """One answer on a kept-alive connection, then the connection held open and idle."""
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
    except (TimeoutError, OSError):
        return "connect failed"
    try:
        async with asyncio.timeout(seconds):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            status = head.split(b" ", 2)[1].decode()
            if status != "200":
                return f"answered {status}"
            if await reader.read(1) == b"":  # waits out ``seconds`` unless the peer closes
                return "closed by the server"
            return "sent unasked bytes"
    except TimeoutError:
        return "held to the end"
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return "reset"
    finally:
        writer.close()


def _held_part(host: str, port: int, count: int, seconds: float) -> list[str]:
    async def run() -> list[str]:
        return await asyncio.gather(*(_held_client(host, port, seconds) for _ in range(count)))

    return asyncio.run(run())


async def _probe(
    url: str, api_key: str | None, sdkappid: int, stop: asyncio.Event
) -> list[tuple[float, str, float]]:
    """The well-behaved client: (when, outcome, seconds) of one request every PROBE_EVERY,
    each on a new connection, until ``stop``."""
    import httpx

    results: list[tuple[float, str, float]] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=10, headers=headers
    ) as client:
        n = 0
        while not stop.is_set():
            began = time.monotonic()
            try:
                if api_key:
                    body = {"sdkappid": sdkappid, "userid": f"probe-{n}"}
                    response = await client.post("/v1/usersig", json=body)
                else:
                    response = await client.get("/healthz")
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            results.append((began, outcome, time.monotonic() - began))
            n += 1
            await asyncio.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - began)))
    return results


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _memory(
    pids: dict[str, list[int]], stop: asyncio.Event
) -> list[tuple[float, dict[str, float]]]:
    """Resident MB of each named group of processes (and their children), once a second."""
    samples: list[tuple[float, dict[str, float]]] = []
    while not stop.is_set():
        samples.append(
            (time.monotonic(), {n: sum(map(_rss_mb, descendants(p))) for n, p in pids.items()})
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return samples


def _tracked(state_file: Path | None) -> dict[str, list[int]]:
    """The processes of a deploy/local state file, grouped: nginx, signer, redis."""
    if state_file is None:
        return {}
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for record in json.loads(state_file.read_text())["processes"]:
        name = record["name"]
        group = "nginx" if name == "nginx" else "redis" if name.startswith("redis") else "signer"
        groups[group].append(int(record["pid"]))
    return dict(groups)


async def siege(args: argparse.Namespace, host: str, port: int) -> None:
    api_key = Path(args.api_key_file).read_text().strip() if args.api_key_file else None
    stop = asyncio.Event()  # the end of the "after" stretch
    probe = asyncio.create_task(_probe(args.url, api_key, args.sdkappid, stop))
    memory = asyncio.create_task(_memory(_tracked(args.state), stop))
    await asyncio.sleep(5)  # the "before" stretch
    began = time.monotonic()
    held_count, slow_count = args.connections or 10_000, args.slow
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(args.processes) as pool:
        share = held_count // args.processes
        held = [
            loop.run_in_executor(pool, _held_part, host, port, share, args.seconds)
            for _ in range(args.processes)
        ]
        slow = [_slow_client(host, port, args.interval, args.seconds) for _ in range(slow_count)]
        slow_outcomes = collections.Counter(await asyncio.gather(*slow))
        held_outcomes = collections.Counter(o for part in await asyncio.gather(*held) for o in part)
    ended = time.monotonic()
    await asyncio.sleep(5)  # the "after" stretch
    stop.set()
    probes, samples = await probe, await memory
    result = {
        "url": args.url,
        "held": held_count,
        "slow": slow_count,
        "seconds": args.seconds,
        "held_outcomes": dict(held_outcomes.most_common()),
        "slow_outcomes": dict(slow_outcomes.most_common()),
        "good_client": {
            name: _stretch([(o, t) for at, o, t in probes if low <= at < high])
            for name, low, high in (
                ("before", 0, began),
                ("during", began, ended),
                ("after", ended, 1e18),
            )
        },
        "resident_mb": {
            name: {
                "before": round(max((s[name] for at, s in samples if at < began), default=0.0)),
                "peak_during": round(
                    max((s[name] for at, s in samples if began <= at < ended), default=0.0)
                ),
            }
            for name in sorted({n for _, sample in samples for n in sample})
        },
    }
    print(
        f"siege: {held_count} held connections and {slow_count} slow clients for {args.seconds:g} s "
        f"(through {args.url})"
    )
    print("  held connections:", result["held_outcomes"])
    print("  slow clients:", result["slow_outcomes"])
    for name, stretch in result["good_client"].items():
        print(f"  good client {name}: {stretch}")
    for name, memory_mb in result["resident_mb"].items():
        print(f"  resident memory (MB), {name}: {memory_mb}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def _stretch(part: list[tuple[str, float]]) -> dict[str, object]:
    """The good client's requests of one stretch: outcomes, and latency of the 200s."""
    times = [t for o, t in part if o == "200"]
    return {
        "requests": len(part),
        "outcomes": dict(collections.Counter(o for o, _ in part)),
        "p50_ms": round(_percentile(times, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(times, 0.99) * 1000, 1),
        "max_ms": round(max(times, default=0) * 1000, 1),
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pattern", choices=["slowloris", "flood", "siege"])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--slow", type=int, default=500, help="siege: slowloris clients")
    parser.add_argument("--api-key-file", help="siege: the good client asks for tokens")
    parser.add_argument("--state", type=Path, help="siege: deploy/local's state.json")
    parser.add_argument("--json", help="siege: also write the figures to this file")
    parser.add_argument(
        "--sdkappid", type=int, default=1400000002, help="siege: the good client's app"
    )
    args = parser.parse_args()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    started = time.monotonic()
    if args.pattern == "siege":
        await siege(args, host, port)
        return
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
