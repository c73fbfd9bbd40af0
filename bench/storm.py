"""signer against the naive app server (issue 12): one interleaved run of every shape.

    .venv/bin/python bench/storm.py --rounds 3 --seconds 8 --connections 64 --threads 1 \\
        --processes 2 --json bench/results/storm.json

The alternative to signer is each app server signing in its own request handler with
Tencent's library: that is bench/naive_app.py (aiohttp on uvloop, ``--processes`` HTTP
processes on one SO_REUSEPORT port, ``POST /usersig {"userid"}``, Tencent's
``TLSSigAPIv2.gen_sig`` for v2 and ``TLSSigAPI.gen_sig`` of tls-sig-api 1.4 for v1, on every
request). tls-sig-api 1.4 only runs with pyOpenSSL 24.2.1 and cryptography < 44, so the v1
naive server runs from a venv of its own, bench/.venv-naive-v1 (git-ignored), which this
script creates on first use with ``python3 -m venv`` and pip (aiohttp and uvloop pinned to
the versions of signer's venv). If that fails, v1 falls back to naive_app.py's
``v1-cryptography`` mode (Tencent's steps with the cryptography package) and every report
says so in capitals.

signer runs as users run it: `signer serve --config` with a config written to a temp dir,
fresh keys from `signer keygen` (a v1 P-256 app 1400000001, a v2 app 1400000002), a
redis-server started here on a free port in the temp dir (``[cache] url``), the default L1,
auth on (a ``[[callers]]`` API key, sent by wrk as ``Authorization: Bearer``), the access
log at info level to a file in the temp dir (emptied after each run), rate limits off.
Both signer and the naive server get ``--processes`` HTTP processes.

Shapes (``--shapes`` picks a comma-separated subset; ratio = second / first):
  v1-warm        naive v1 vs signer. Userids drawn at random (per wrk thread) from
                 ``--warm-users`` (50,000) that signer fetched once before the timed
                 runs (POST /v1/usersig/batch), so signer answers from its cache (L1, else
                 Redis); the naive server signs every request regardless.
  v1-cold        naive v1 vs signer. A distinct userid per request (a wrk Lua counter,
                 prefixed per wrk thread and per run), so signer signs every one too.
  v2-warm        as v1-warm, v2 (HMAC) app.
  v2-cold        as v1-cold, v2 app.
  nol1-vs-bare   the ceiling: naive_app.py --mode bare (aiohttp+uvloop returning constant
                 JSON, same processes) vs signer with L1 off (``[cache] l1_entries = 0``,
                 same Redis), v1 warm: every hit is a Redis read.
  cold-cache     signer v1 cold mints with ``[cache] url = ""`` (with several processes
                 nothing is cached at all; with --processes 1 the in-memory cache) vs
                 signer v1 cold mints with Redis: what the cache costs a miss.

Every server is started first; then, round after round, each shape's two servers get
one wrk run each, in alternating order (as bench/http_ab.py does), so the machine's drift
falls on both sides alike. Reported: the median req/s and p99 of each side, the ratio of
the medians, and for every signer run the deltas of its /metrics (``signer_cache_*``,
``signer_tokens_signed_total``; round trips and commands to Redis by kind when the
service exports ``signer_cache_round_trips_total`` / ``signer_cache_commands_total``) per
request. After each signer run the bench waits 1.2 s before scraping, since with several
processes a sibling's counts reach /metrics up to a second late. Cold userids are
removed from Redis after each cold run, so Redis holds the warm set only.

Every process started here (servers, redis-server) runs in its own session with
PR_SET_PDEATHSIG, and is stopped by pid when the run ends, on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from http_service import free_port, wait_ready  # noqa: E402

from deploy.local.keys import make_keys  # noqa: E402
from deploy.local.naive import naive_v1  # noqa: E402
from deploy.local.processes import Processes  # noqa: E402  (the launcher loadtest shares)

PYTHON = sys.executable
V1_APP, V2_APP = 1400000001, 1400000002
SETTLE = 1.2  # seconds: a sibling process's counters reach /metrics within ~1 s


@dataclass(frozen=True)
class Shape:
    name: str
    first: str  # server names; ratio = second / first
    second: str
    kind: str  # "warm" or "cold"
    sdkappid: int
    meaning: str


SHAPES = [
    Shape("v1-warm", "naive-v1", "signer", "warm", V1_APP, "v1, cached userids"),
    Shape("v1-cold", "naive-v1", "signer", "cold", V1_APP, "v1, a new userid per request"),
    Shape("v2-warm", "naive-v2", "signer", "warm", V2_APP, "v2, cached userids"),
    Shape("v2-cold", "naive-v2", "signer", "cold", V2_APP, "v2, a new userid per request"),
    Shape("nol1-vs-bare", "bare", "signer-nol1", "warm", V1_APP, "v1 warm, L1 off vs bare"),
    Shape("cold-cache", "signer-nocache", "signer", "cold", V1_APP, "v1 cold, no cache vs Redis"),
]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    path: str = "/usersig"  # the naive and bare servers; signer: /v1/usersig
    api_key: str | None = None  # signer only
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_signer(self) -> bool:
        return self.api_key is not None


# ---------------------------------------------------------------- processes


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- servers and Redis


def start_redis(procs: Processes, tmp: Path) -> tuple[str, Any]:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("storm: redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    data = tmp / "redis"
    data.mkdir()
    process = procs.start(
        "redis-server",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        tmp / "redis.log",
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"storm: redis-server did not start: {(tmp / 'redis.log').read_text()[-1000:]}"
                ) from exc
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", client


SIGNER_ENV: dict[str, str] = {}
"""Settings of every signer this run starts (``--signer-env``), over its config file."""

SIGNER_CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
processes = {processes}
log_format = "json"
log_level = "info"

[[apps]]
sdkappid = {v1}
algorithm = "v1"
private_key_file = "keys/v1/private_key"

[[apps]]
sdkappid = {v2}
algorithm = "v2"
secret_file = "keys/v2/secret"

[[callers]]
name = "storm"
api_key_file = "keys/caller"
sdkappids = [{v1}, {v2}]

[rate_limit]
enabled = false

[cache]
url = "{cache_url}"
{cache_extra}
"""


def start_signer(
    procs: Processes,
    tmp: Path,
    name: str,
    processes: int,
    cache_url: str,
    cache_extra: str,
    api_key: str,
) -> Server:
    port = free_port()
    config = tmp / f"{name}.toml"
    config.write_text(
        SIGNER_CONFIG.format(
            port=port,
            processes=processes,
            v1=V1_APP,
            v2=V2_APP,
            cache_url=cache_url,
            cache_extra=cache_extra,
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    env.update(SIGNER_ENV)
    log = tmp / f"{name}.log"
    process = procs.start(
        name, [PYTHON, "-m", "signer", "serve", "--config", str(config)], log, cwd=ROOT, env=env
    )
    return Server(name, f"http://127.0.0.1:{port}", process, log, "/v1/usersig", api_key)


def start_naive(procs: Processes, tmp: Path, name: str, argv: list[str], processes: int) -> Server:
    port = free_port()
    log = tmp / f"{name}.log"
    command = [*argv, "--port", str(port), "--processes", str(processes)]
    process = procs.start(name, command, log, cwd=ROOT)
    return Server(name, f"http://127.0.0.1:{port}", process, log)


def ready(server: Server) -> None:
    try:
        wait_ready(
            f"{server.url}/readyz" if server.is_signer else f"{server.url}/healthz", server.process
        )
    except SystemExit as exc:
        tail = server.log.read_text(errors="replace")[-3000:]
        raise SystemExit(
            f"storm: {server.name} did not come up ({exc}); its log ends:\n{tail}"
        ) from None


def fill_warm(server: Server, sdkappid: int, users: int, redis_client: Any) -> float:
    """Fetch every warm userid once through signer, and wait until Redis holds them."""
    start = time.perf_counter()
    before = redis_client.dbsize()
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(timeout=120, headers=headers) as http:
        for first in range(0, users, 5000):
            ids = [f"warm_{n}" for n in range(first, min(users, first + 5000))]
            response = http.post(
                f"{server.url}/v1/usersig/batch", json={"sdkappid": sdkappid, "userids": ids}
            )
            response.raise_for_status()
    deadline = time.monotonic() + 30
    while redis_client.dbsize() < before + users and time.monotonic() < deadline:
        time.sleep(0.1)  # the cache writes are queued behind the answers
    return time.perf_counter() - start


def drop_cold_keys(redis_client: Any) -> int:
    """Remove the cold runs' tokens (userids c<run>_...), keeping Redis at the warm set."""
    dropped = 0
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match="*{14*:c[0-9]*", count=10_000):
        batch.append(key)
        if len(batch) >= 5000:
            dropped += redis_client.unlink(*batch)
            batch.clear()
    if batch:
        dropped += redis_client.unlink(*batch)
    return dropped


# ---------------------------------------------------------------- wrk


LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
  math.randomseed(SEED + tid * 7919)
end
local headers = {HEADERS}
request = function()
  counter = counter + 1
  local userid = USERID
  return wrk.format("POST", "PATH", headers, string.format('BODY', userid))
end
"""


def lua_script(server: Server, shape: Shape, tag: str, warm_users: int) -> str:
    headers = '["Content-Type"] = "application/json"'
    if server.is_signer:
        headers += f', ["Authorization"] = "Bearer {server.api_key}"'
        body = '{"sdkappid":' + str(shape.sdkappid) + ',"userid":"%s"}'
    else:
        body = '{"userid":"%s"}'
    if shape.kind == "warm":
        userid = f'"warm_" .. math.random(0, {warm_users - 1})'
    else:  # c<run>_<thread>_<n>: never the same userid twice in the whole bench
        userid = f'string.format("{tag}_%d_%d", tid, counter)'
    return (
        LUA.replace("SEED", str(secrets.randbelow(1 << 30)))
        .replace("HEADERS", headers)
        .replace("USERID", userid)
        .replace("PATH", server.path)
        .replace("BODY", body)
    )


def run_wrk(
    url: str, script: str, seconds: float, connections: int, threads: int
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(found.group(1)) * scale[found.group(2)] if found else float("nan")

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rate": float(rate.group(1)) if rate else float("nan"),
        "requests": float(total.group(1)) if total else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(n) for n in sockets.groups())) if sockets else 0.0,
    }


# ---------------------------------------------------------------- metrics


def scrape(server: Server) -> dict[str, float]:
    """The counters among signer's signer_cache_* and signer_tokens_signed_* samples."""
    try:
        text = httpx.get(
            f"{server.url}/metrics",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=10,
        ).text
    except httpx.HTTPError:
        return {}
    samples = {}
    for line in text.splitlines():
        if not line.startswith(("signer_cache_", "signer_tokens_signed")):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.partition("{")[0].endswith("_total"):
            with contextlib.suppress(ValueError):
                samples[sample] = float(value)
    return samples


def family(deltas: dict[str, float], name: str) -> dict[str, float]:
    """``name``'s samples by their first label value ('' for none)."""
    out: dict[str, float] = {}
    for sample, value in deltas.items():
        base, _, labels = sample.partition("{")
        if base == name:
            label = re.search(r'="([^"]*)"', labels)
            key = label.group(1) if label else ""
            out[key] = out.get(key, 0.0) + value
    return out


def describe_metrics(deltas: dict[str, float], requests: float, redis: bool) -> list[str]:
    if requests <= 0:
        return []

    def per(value: float) -> float:
        return value / requests

    lines = []
    signed = sum(family(deltas, "signer_tokens_signed_total").values())
    lookups = family(deltas, "signer_cache_lookups_total")
    lines.append(
        f"signed {per(signed):.3f}/req; lookups/req "
        + ", ".join(f"{k} {per(v):.3f}" for k, v in sorted(lookups.items()))
    )
    for name, what in (
        ("signer_cache_round_trips_total", "Redis round trips"),
        ("signer_cache_commands_total", "Redis commands"),
    ):
        values = family(deltas, name)
        if not redis:
            lines.append(f"{what}: none, this signer has no [cache] url")
        elif values:
            total = sum(values.values())
            parts = ", ".join(f"{k} {per(v):.3f}" for k, v in sorted(values.items()) if v)
            lines.append(f"{what}/req {per(total):.3f} ({parts or 'none'})")
        else:
            lines.append(f"{what}: not exported by this signer (no {name})")
    errors = sum(family(deltas, "signer_cache_errors_total").values())
    dropped = sum(family(deltas, "signer_cache_dropped_writes_total").values())
    if errors or dropped:
        lines.append(f"cache errors {errors:.0f}, dropped writes {dropped:.0f}")
    return lines


# ---------------------------------------------------------------- the run


def measure(
    server: Server,
    shape: Shape,
    args: argparse.Namespace,
    seconds: float,
    tag: str,
    redis_client: Any,
) -> dict[str, Any]:
    before = scrape(server) if server.is_signer else {}
    result: dict[str, Any] = run_wrk(
        server.url + server.path,
        lua_script(server, shape, tag, args.warm_users),
        seconds,
        args.connections,
        args.threads,
    )
    if server.is_signer:
        time.sleep(SETTLE)
        after = scrape(server)
        result["metrics"] = {
            k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)
        }
        result["log_bytes"] = server.log.stat().st_size
        os.truncate(server.log, 0)  # the access log: O_APPEND, so the server goes on writing at 0
        if shape.kind == "cold" and redis_client is not None and server.name == "signer":
            result["cold_keys_dropped"] = drop_cold_keys(redis_client)
    if server.process.poll() is not None:
        raise SystemExit(f"storm: {server.name} exited during a run; see {server.log}")
    return result


def main() -> None:
    names = [shape.name for shape in SHAPES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="per wrk run")
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of wrk per server before the rounds"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--processes", type=int, default=2, help="HTTP processes of every server")
    parser.add_argument("--warm-users", type=int, default=50_000)
    parser.add_argument(
        "--shapes", default=",".join(names), help=f"comma-separated subset of {','.join(names)}"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--signer-env",
        action="append",
        default=[],
        metavar="SIGNER_X__Y=V",
        help="a setting for every signer started (repeatable), e.g. "
        "SIGNER_ENGINE__INLINE_V2_MAX=64",
    )
    args = parser.parse_args()
    for pair in args.signer_env:
        name, equals, value = pair.partition("=")
        if not (equals and name.startswith("SIGNER_")):
            parser.error(f"--signer-env takes SIGNER_...=VALUE, not {pair!r}")
        SIGNER_ENV[name] = value
    chosen = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown or not chosen:
        parser.error(f"unknown shapes {unknown}; choose from {names}")
    if args.processes < 1 or args.rounds < 1 or args.seconds < 1:
        parser.error("--processes, --rounds and --seconds must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    shapes = [shape for shape in SHAPES if shape.name in chosen]
    wanted = {name for shape in shapes for name in (shape.first, shape.second)}

    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    procs = Processes(say=lambda line: print(f"storm: {line}"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.name: {s.first: [], s.second: []} for s in shapes
    }
    info: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    try:
        if "naive-v1" in wanted:  # first: it may have to make its venv
            python, mode, info["naive_v1"] = naive_v1()
        keys = make_keys(tmp, PYTHON)
        api_key = keys["caller"].read_text().strip()
        servers: dict[str, Server] = {}
        redis_url, redis_client = "", None
        if wanted & {"signer", "signer-nol1"}:
            redis_url, redis_client = start_redis(procs, tmp)
        if "signer" in wanted:
            servers["signer"] = start_signer(
                procs, tmp, "signer", args.processes, redis_url, "", api_key
            )
        if "signer-nol1" in wanted:
            servers["signer-nol1"] = start_signer(
                procs, tmp, "signer-nol1", args.processes, redis_url, "l1_entries = 0", api_key
            )
        if "signer-nocache" in wanted:
            servers["signer-nocache"] = start_signer(
                procs, tmp, "signer-nocache", args.processes, "", "", api_key
            )
        if "naive-v1" in wanted:
            servers["naive-v1"] = start_naive(
                procs,
                tmp,
                "naive-v1",
                [
                    python,
                    str(HERE / "naive_app.py"),
                    "--mode",
                    mode,
                    "--sdkappid",
                    str(V1_APP),
                    "--private-key",
                    str(keys["v1_private"]),
                    "--public-key",
                    str(keys["v1_public"]),
                ],
                args.processes,
            )
        if "naive-v2" in wanted:
            info["naive_v2"] = (
                f"Tencent tls-sig-api-v2 {importlib.metadata.version('tls-sig-api-v2')}"
            )
            servers["naive-v2"] = start_naive(
                procs,
                tmp,
                "naive-v2",
                [
                    PYTHON,
                    str(HERE / "naive_app.py"),
                    "--mode",
                    "v2",
                    "--sdkappid",
                    str(V2_APP),
                    "--secret-file",
                    str(keys["v2_secret"]),
                ],
                args.processes,
            )
        if "bare" in wanted:
            servers["bare"] = start_naive(
                procs,
                tmp,
                "bare",
                [PYTHON, str(HERE / "naive_app.py"), "--mode", "bare"],
                args.processes,
            )
        for server in servers.values():
            ready(server)

        filler = servers.get("signer") or servers.get("signer-nol1")
        for sdkappid in sorted(
            {s.sdkappid for s in shapes if s.kind == "warm" and s.second.startswith("signer")}
        ):
            took = fill_warm(filler, sdkappid, args.warm_users, redis_client)  # type: ignore[arg-type]
            print(
                f"storm: {args.warm_users:,} warm userids of {sdkappid} fetched through signer in {took:.1f} s"
            )

        run = 0
        if args.warmup > 0:
            for shape in shapes:  # each server once, in the shape it will be timed in
                for name in (shape.first, shape.second):
                    server = servers[name]
                    if server.meta.get("warm"):
                        continue
                    run += 1
                    measure(server, shape, args, args.warmup, f"c{run}", redis_client)
                    server.meta["warm"] = True
        for round_no in range(args.rounds):
            for shape in shapes:
                order = (
                    (shape.first, shape.second)
                    if round_no % 2 == 0
                    else (shape.second, shape.first)
                )
                for name in order:
                    run += 1
                    figures = measure(
                        servers[name], shape, args, args.seconds, f"c{run}", redis_client
                    )
                    results[shape.name][name].append(figures)
                    print(
                        f"  round {round_no + 1} {shape.name:13s} {name:15s} {figures['rate']:9,.0f} req/s"
                        f"  p99 {figures['p99_ms']:6.2f} ms"
                        + (f"  non-2xx {figures['non2xx']:.0f}" if figures["non2xx"] else "")
                        + (
                            f"  socket errors {figures['socket_errors']:.0f}"
                            if figures["socket_errors"]
                            else ""
                        ),
                        flush=True,
                    )
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    report(shapes, results, info, args)


def report(
    shapes: list[Shape],
    results: dict[str, dict[str, list[dict[str, Any]]]],
    info: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    print(
        f"\nwrk -t{args.threads} -c{args.connections}, {args.rounds} alternating rounds of {args.seconds} s, "
        f"{args.processes} HTTP processes per server, {os.cpu_count()} cores shared by everything"
    )
    for key, value in info.items():
        print(f"{key}: {value}")
    if info.get("naive_v1", "").startswith("NOT"):
        print("WARNING: THE NAIVE v1 FIGURES ARE NOT OF TENCENT'S tls-sig-api (see above)")
    print(
        f"\n{'shape':13s} {'first':15s} {'req/s':>9s} {'p99':>8s}   {'second':15s} {'req/s':>9s} {'p99':>8s}   ratio"
    )
    summary: dict[str, Any] = {}
    for shape in shapes:
        sides = results[shape.name]
        med = {}
        for name in (shape.first, shape.second):
            runs = sides[name]
            med[name] = (
                statistics.median(r["rate"] for r in runs) if runs else float("nan"),
                statistics.median(r["p99_ms"] for r in runs) if runs else float("nan"),
            )
        a, b = med[shape.first], med[shape.second]
        ratio = b[0] / a[0] if a[0] else float("nan")
        print(
            f"{shape.name:13s} {shape.first:15s} {a[0]:9,.0f} {a[1]:6.2f}ms   "
            f"{shape.second:15s} {b[0]:9,.0f} {b[1]:6.2f}ms   {ratio:5.2f}x"
        )
        bad = sum(r["non2xx"] + r["socket_errors"] for side in sides.values() for r in side)
        if bad:
            print(
                f"{'':13s} WARNING: {bad:.0f} non-2xx responses or socket errors in this shape's runs"
            )
        summary[shape.name] = {
            "meaning": shape.meaning,
            "first": shape.first,
            "second": shape.second,
            "first_median_rate": a[0],
            "first_median_p99_ms": a[1],
            "second_median_rate": b[0],
            "second_median_p99_ms": b[1],
            "ratio": ratio,
            "runs": sides,
        }
    print("\nsigner's /metrics over each shape's timed runs, per request:")
    for shape in shapes:
        for name in (shape.first, shape.second):
            runs = [r for r in results[shape.name][name] if "metrics" in r]
            if not runs:
                continue
            deltas: dict[str, float] = {}
            for r in runs:
                for sample, value in r["metrics"].items():
                    deltas[sample] = deltas.get(sample, 0.0) + value
            requests = sum(r["requests"] for r in runs)
            log_bytes = sum(r["log_bytes"] for r in runs)
            lines = describe_metrics(deltas, requests, name != "signer-nocache")
            lines.append(f"access log {log_bytes / requests if requests else 0:.0f} bytes/req")
            print(f"  {shape.name} {name}: " + "\n    ".join(lines))
            summary[shape.name].setdefault("metrics_per_request", {})[name] = (
                {k: v / requests for k, v in deltas.items()} if requests else {}
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "settings": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "cores": os.cpu_count(),
                    "servers": info,
                    "shapes": summary,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("storm: interrupted; every process it started is stopped", file=sys.stderr)
        sys.exit(130)
