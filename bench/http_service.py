"""HTTP throughput of `signer serve` against a bare aiohttp+uvloop handler, with wrk.

    .venv/bin/python bench/http_service.py [--seconds 15] [--connections 64] [--processes 2]

In one run:
  bare handler   bench/bare_server.py: POST returns constant JSON (the ceiling of aiohttp here)
  cold mints     `signer serve` (dev mode, v1 P-256 app, rate limit off), POST /v1/usersig with
                 a distinct userid per request, so nothing is ever served from cache; once
                 with one HTTP process, once with `--processes` ([server] processes)
  batch of 1000  POST /v1/usersig/batch, 1000 distinct userids per request (tokens/s)
  signer bulk    `signer bulk --count 200000` v1 P-256 (tokens/s), the batch target's baseline
wrk runs with 1 thread (the machine has 2 cores, shared by wrk, the server and its workers).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # the checkout: tests.support

from tests.support import free_port  # noqa: E402  (also for the scripts importing it from here)

PYTHON = sys.executable
SIGNER = str(Path(PYTHON).parent / "signer")

MINT_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"sdkappid":SDKAPPID,"userid":"w%d_%d"}', math.random(1, 1000000000), counter)
  return wrk.format("POST", "/v1/usersig", {["Content-Type"] = "application/json"}, body)
end
"""


def mint_script(sdkappid: int = 1400000001) -> str:
    """A wrk script minting for a distinct userid each request: nothing comes from cache."""
    return MINT_LUA.replace("SDKAPPID", str(sdkappid))


BATCH_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  local ids = {}
  local run = math.random(1, 1000000000)
  for i = 1, 1000 do ids[i] = string.format('"b%d_%d_%d"', run, counter, i) end
  local body = '{"sdkappid":1400000001,"userids":[' .. table.concat(ids, ",") .. ']}'
  return wrk.format("POST", "/v1/usersig/batch", {["Content-Type"] = "application/json"}, body)
end
"""


def wait_ready(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers at all (or ``process``, the server, exits: then stop)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def wrk(url: str, script: str | None, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(
            script
            or 'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rate": rate,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2, help="[server] processes")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    env["SIGNER_RATE_LIMIT__ENABLED"] = "false"
    env["SIGNER_SERVER__LOG_LEVEL"] = "warning"

    port = free_port()
    bare = subprocess.Popen([PYTHON, str(HERE / "bare_server.py"), str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/")
        wrk(f"http://127.0.0.1:{port}/v1/usersig", None, 2, args.connections)  # warm
        bare_result = wrk(
            f"http://127.0.0.1:{port}/v1/usersig", None, args.seconds, args.connections
        )
    finally:
        bare.terminate()
        bare.wait()

    port = free_port()
    server = subprocess.Popen(
        [SIGNER, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        url = f"http://127.0.0.1:{port}"
        wrk(f"{url}/v1/usersig", mint_script(), 2, args.connections)  # warm
        single = wrk(f"{url}/v1/usersig", mint_script(), args.seconds, args.connections)
    finally:
        server.terminate()
        server.wait()

    port = free_port()
    server = subprocess.Popen(
        [SIGNER, "serve", "--port", str(port)],
        env={**env, "SIGNER_SERVER__PROCESSES": str(args.processes)},
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        url = f"http://127.0.0.1:{port}"
        wrk(f"{url}/v1/usersig", mint_script(), 2, args.connections)  # warm
        mint = wrk(f"{url}/v1/usersig", mint_script(), args.seconds, args.connections)
        batch = wrk(f"{url}/v1/usersig/batch", BATCH_LUA, args.seconds, 4)
    finally:
        server.terminate()
        server.wait()

    with tempfile.TemporaryDirectory() as keys:
        subprocess.run([SIGNER, "keygen", "--out", keys], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(
            [
                SIGNER,
                "bulk",
                "--sdkappid",
                "1400000001",
                "--private-key",
                f"{keys}/private_key",
                "--count",
                "200000",
                "--out",
                os.devnull,
            ],
            check=True,
            capture_output=True,
        )
        bulk_rate = 200_000 / (time.perf_counter() - start)

    batch_tokens = batch["rate"] * 1000
    print(
        f"wrk -t1 -c{args.connections} -d{args.seconds}s; 2 cores shared by wrk, server, workers\n"
    )
    print(
        f"bare aiohttp+uvloop handler : {bare_result['rate']:9,.0f} req/s  p99 {bare_result['p99_ms']:.2f} ms"
    )
    print(
        f"cold mints, 1 process       : {single['rate']:9,.0f} req/s  p99 {single['p99_ms']:.2f} ms  "
        f"non-2xx {single['errors']:.0f}  = {single['rate'] / bare_result['rate']:.2f}x bare"
    )
    print(
        f"cold mints, {args.processes} processes     : {mint['rate']:9,.0f} req/s  p99 {mint['p99_ms']:.2f} ms  "
        f"non-2xx {mint['errors']:.0f}  = {mint['rate'] / bare_result['rate']:.2f}x bare (target >= 0.4x, p99 <= 10 ms)"
    )
    print(
        f"batch of 1000, {args.processes} processes : {batch_tokens:9,.0f} tokens/s  p99 {batch['p99_ms']:.0f} ms  "
        f"non-2xx {batch['errors']:.0f}  = {batch_tokens / bulk_rate:.2f}x signer bulk"
    )
    print(f"signer bulk (200k, v1)      : {bulk_rate:9,.0f} tokens/s (whole process)")


if __name__ == "__main__":
    main()
