"""The "next morning" storm (issue 15): users issued tokens yesterday, all logging in at
once after their tokens passed their refresh point, with keep-warm on and off, in one run.

    .venv/bin/python bench/morning.py [--users 100000] [--expire 120] [--algorithm v1]

Real time stands for the night: tokens live ``--expire`` seconds (min_remaining 10 s,
refresh_ahead 20 s), so ``expire - 10`` seconds after they were issued none is servable
any more. Per arm (keep-warm off, then on), against a fresh redis-server and one
``signer serve`` ([server] processes = 2, auth and rate limit off, L1 off):
  1. yesterday: every user gets a token (POST /v1/usersig/batch, 5,000 a request);
  2. the night: wait until ``expire - 10 + 5`` s after the last token; with keep-warm on
     ([keep_warm] rate 5,000 a process, spread 0.5, interval 0.2 s) it re-signs meanwhile;
  3. the morning: every user logs in once, in a random order (wrk, 1 thread, 64
     connections, one distinct userid a request, until every user has had an answer).
At dawn the signer is restarted (unless ``--no-dawn-restart``), as on a real morning: its
processes remember for an hour which users asked, and a hit of one they remember writes
no keep-warm "seen" mark; after a real night every login's hit writes one.
Reported per arm: the storm's req/s, p50/p99, non-2xx, cache lookups by result and
signatures during it (``/metrics``), and for the night the CPU of signer (its processes and
workers, /proc) and Redis's used_memory after the fill: the arms' difference is keep-warm's
cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from signer.core import Curve, generate_private_key  # noqa: E402
from tests.support import RedisServer, free_port  # noqa: E402

APP = 1400000001
TICKS = os.sysconf("SC_CLK_TCK")

CONFIG = """
[server]
port = {port}
processes = 2
log_level = "warning"
max_batch_userids = 5000

[auth]
disabled = true

[rate_limit]
enabled = false

[[apps]]
sdkappid = {app}
algorithm = "{algorithm}"
{key}
default_expire = {expire}
min_expire = 1
keep_warm_days = {days}

[cache]
url = "{url}"
min_remaining = 10
refresh_ahead = 20
timeout = 0.2

[keep_warm]
rate = 5000
spread = 0.5
interval = 0.2
"""

STORM_LUA = """
local order = {}
local users = USERS
math.randomseed(SEED)
counter = 0
answered = 0
local function now()
  local clock = io.popen("date +%s.%N")
  local text = clock:read("*l")
  clock:close()
  return text
end
init = function(args)
  for i = 0, users - 1 do order[i + 1] = i end
  for i = users, 2, -1 do local j = math.random(i); order[i], order[j] = order[j], order[i] end
  started = now()
end
request = function()
  counter = counter + 1
  local body
  if counter <= users then
    body = string.format('{"sdkappid":APP,"userid":"m_%d"}', order[counter])
  else  -- the connections' last requests in flight: userids nobody had, misses both arms
    body = string.format('{"sdkappid":APP,"userid":"x_%d"}', counter)
  end
  return wrk.format("POST", "/v1/usersig", {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  answered = answered + 1
  if answered == users then
    local out = io.open("MARK", "w")
    out:write(started .. " " .. now() .. "\\n")
    out:close()
    wrk.thread:stop()
  end
end
"""


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and every live descendant (from /proc)."""
    stats: dict[int, tuple[int, int]] = {}  # pid -> (parent, ticks)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, total = {root}, 0
    changed = True
    while changed:
        changed = False
        for pid, (parent, _) in stats.items():
            if parent in family and pid not in family:
                family.add(pid)
                changed = True
    for pid in family:
        total += stats.get(pid, (0, 0))[1]
    return total / TICKS


def metrics(url: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("signer_cache_lookups", "signer_tokens_signed", "signer_keepwarm")):
            sample, _, value = line.rpartition(" ")
            samples[sample] = float(value)
    return samples


def family(samples: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k.startswith(prefix)}


def used_memory(server: RedisServer) -> int:
    for line in server.cli("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return 0


def storm(url: str, users: int, tmp: Path) -> dict[str, float]:
    """Every user once, through wrk; the storm's time is from wrk's start to the answer of
    the last user (written by the script), since wrk itself only stops at -d."""
    mark = tmp / "storm.mark"
    mark.unlink(missing_ok=True)
    script = STORM_LUA.replace("USERS", str(users)).replace("APP", str(APP))
    script = script.replace("SEED", str(int(time.time()))).replace("MARK", str(mark))
    lua = tmp / "storm.lua"
    lua.write_text(script)
    wrk = subprocess.Popen(
        ["wrk", "-t1", "-c64", "-d300s", "--latency", "-s", str(lua), f"{url}/v1/usersig"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not mark.exists() and wrk.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    wrk.send_signal(signal.SIGINT)  # wrk prints its figures on SIGINT
    out, _ = wrk.communicate(timeout=30)
    began, ended = (float(x) for x in mark.read_text().split())
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(found.group(1)) * scale[found.group(2)] if found else float("nan")

    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": users / (ended - began),
        "seconds": ended - began,
        "requests": float(total.group(1)) if total else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def arm(
    tmp: Path, keep_warm: bool, args: argparse.Namespace, night: bool = True
) -> dict[str, object]:
    """One arm; ``night=False``: the storm comes right after the fill (every token still
    fresh, keep-warm off): the ceiling, a plain warm storm."""
    name = ("on" if keep_warm else "off") if night else "fresh"
    redis = RedisServer(tmp / f"redis-{name}").start()
    port = free_port()
    keys = tmp / "keys"
    keys.mkdir(exist_ok=True)
    if args.algorithm == "v1":
        (keys / "private_key").write_bytes(generate_private_key(Curve.P256).to_pem())
        key = f'private_key_file = "{keys / "private_key"}"'
    else:
        key = 'secret = "morning-storm-secret"'
    config = tmp / f"{name}.toml"
    config.write_text(
        CONFIG.format(
            port=port,
            app=APP,
            algorithm=args.algorithm,
            key=key,
            expire=args.expire,
            days=1 if keep_warm else 0,
            url=redis.url,
        )
    )
    log = (tmp / f"signer-{name}.log").open("ab")
    url = f"http://127.0.0.1:{port}"
    process: subprocess.Popen[bytes] | None = None
    try:
        process = serve(config, url, log)
        before_fill = used_memory(redis)
        start = time.monotonic()
        with httpx.Client(timeout=300) as http:
            for first in range(0, args.users, 5000):
                ids = [f"m_{n}" for n in range(first, min(args.users, first + 5000))]
                http.post(
                    f"{url}/v1/usersig/batch", json={"sdkappid": APP, "userids": ids}
                ).raise_for_status()
        filled = time.monotonic()
        time.sleep(2)  # the last writes land
        memory = used_memory(redis) - before_fill
        night_cpu0 = tree_cpu(process.pid)
        redis_cpu0 = tree_cpu(redis.process.pid)  # type: ignore[union-attr]
        wake = filled + args.expire - 10 + 5 if night else filled
        print(
            f"[{name}] filled {args.users} in {filled - start:.1f} s; night until +{wake - filled:.0f} s",
            flush=True,
        )
        while time.monotonic() < wake:
            time.sleep(1)
        night_cpu = tree_cpu(process.pid) - night_cpu0
        night_redis = tree_cpu(redis.process.pid) - redis_cpu0  # type: ignore[union-attr]
        time.sleep(1.5)  # a sibling process's counters reach /metrics within ~1 s
        keepwarm_at_dawn = family(metrics(url), "signer_keepwarm")
        if args.dawn_restart:  # a new day: no process remembers who asked yesterday
            stop(process)
            process = serve(config, url, log)
            time.sleep(1.5)
        at_dawn = metrics(url)
        result = storm(url, args.users, tmp)
        time.sleep(1.5)
        after = metrics(url)
        delta = {k: after.get(k, 0.0) - at_dawn.get(k, 0.0) for k in after}
        lookups = {
            k.split('"')[1]: v for k, v in family(delta, "signer_cache_lookups").items() if '"' in k
        }
        signed = sum(family(delta, "signer_tokens_signed").values())
        asked = sum(lookups.values())
        return {
            "arm": f"keep-warm {name}",
            "storm": result,
            "lookups": lookups,
            "hit_ratio": lookups.get("hit", 0.0) / asked if asked else float("nan"),
            "signed_in_storm": signed,
            "night_signer_cpu_s": night_cpu,
            "night_redis_cpu_s": night_redis,
            "redis_bytes_after_fill": memory,
            "keepwarm_at_dawn": keepwarm_at_dawn,
        }
    finally:
        if process is not None:
            stop(process)
        log.close()
        redis.stop()


def serve(config: Path, url: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``signer serve --config config``, once its /readyz answers 200 at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "signer", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            stop(process)
            raise SystemExit(f"signer ({config.stem}) did not come up")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--expire", type=int, default=120)
    parser.add_argument("--algorithm", choices=["v1", "v2"], default="v1")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--no-dawn-restart",
        dest="dawn_restart",
        action="store_false",
        help="keep the night's signer for the storm (its processes then remember, for an "
        "hour, which users asked at the fill, and their hits write no 'seen' mark)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        results = [arm(tmp, False, args), arm(tmp, True, args), arm(tmp, False, args, night=False)]
    off, on, fresh = results
    for result in results:
        print(json.dumps(result, indent=1))
    resigned = sum(
        v
        for k, v in on["keepwarm_at_dawn"].items()
        if k.startswith("signer_keepwarm_resigned")  # type: ignore[union-attr]
    )
    extra_cpu = on["night_signer_cpu_s"] - off["night_signer_cpu_s"]  # type: ignore[operator]
    print(
        f"storm req/s on/off: {on['storm']['rate']:.0f} / {off['storm']['rate']:.0f} = "  # type: ignore[index]
        f"{on['storm']['rate'] / off['storm']['rate']:.2f}x; hit ratio on {on['hit_ratio']:.4f}, "  # type: ignore[index]
        f"off {off['hit_ratio']:.4f}; re-signs in the night {resigned:.0f}, signer CPU "
        f"{extra_cpu:.1f} s more ({1e6 * extra_cpu / resigned if resigned else 0:.0f} µs a "
        f"re-sign); Redis bytes per user on/off {on['redis_bytes_after_fill'] / args.users:.0f} / "  # type: ignore[operator]
        f"{off['redis_bytes_after_fill'] / args.users:.0f}; a plain warm storm (no night) "  # type: ignore[operator]
        f"{fresh['storm']['rate']:.0f} req/s"  # type: ignore[index]
    )
    if args.out:
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
