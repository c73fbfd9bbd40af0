"""One run: the deployment (``--local`` or ``--target``), locust headless as a library,
CSV + HTML + ``summary.json`` into ``--out``, the SLA gates and the exit status.

Imports locust (and so gevent's monkey-patching) at the top: import this module only in
the ``python -m loadtest`` process, never in pytest's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import resource
import signal
import sys
import time
import urllib.error
import urllib.request
from argparse import Namespace
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust.env import Environment
from locust.html import get_html_report

from loadtest import local, scenarios
from loadtest.checks import TokenChecker, load_keys

DEFAULT_USERS = {"storm": 1000, "stampede": 50, "batch": 4, "verify": 20, "mixed": 50}
EXIT_SLA = 1  # an SLA gate failed
EXIT_ERROR = 2  # the run could not be made (bad options, a service that did not start)
_SAMPLE = re.compile(
    r"^(signer_tokens_signed_total|signer_cache_lookups_total|signer_cache_errors_total"
    r"|signer_cache_dropped_writes_total)(\{[^}]*\})? (\S+)$"
)
_TOTALS = {
    "signer_tokens_signed_total": "signed",
    "signer_cache_errors_total": "cache_errors",
    "signer_cache_dropped_writes_total": "dropped_writes",
}

log = logging.getLogger("loadtest")


class Stop(Exception):
    """SIGTERM (or SIGINT) arrived: stop the load and clean up."""


def scrape(url: str) -> dict[str, float]:
    """Signatures computed, cache lookups by result, and the shared cache's failed calls
    and dropped writes (why a warm request may sign again) from one ``/metrics``."""
    out = dict.fromkeys(("signed", "hit", "miss", "stale", "mismatch", *_TOTALS.values()), 0.0)
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # noqa: S310
            text = answer.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        log.warning("could not read %s/metrics: %s", url, exc)
        return {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        if name in _TOTALS:
            out[_TOTALS[name]] += float(value)
        else:
            result = re.search(r'result="([^"]*)"', labels or "")
            if result is not None and result.group(1) in out:
                out[result.group(1)] += float(value)
    return out


def _metrics_delta(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, Any]:
    if not all(before) or not all(after):
        return {"available": False}
    delta = {k: sum(a[k] for a in after) - sum(b[k] for b in before) for k in after[0]}
    lookups = delta["hit"] + delta["miss"] + delta["stale"] + delta["mismatch"]
    served = delta["hit"] + delta["stale"]
    return {
        "available": True,
        "signatures_computed": int(delta["signed"]),
        "cache_lookups": {k: int(delta[k]) for k in ("hit", "miss", "stale", "mismatch")},
        "cache_hit_ratio": round(served / lookups, 4) if lookups else None,
        "cache_errors": int(delta["cache_errors"]),
        "dropped_writes": int(delta["dropped_writes"]),
    }


def _entry(entry: locust.stats.StatsEntry) -> dict[str, Any]:
    seconds = [second for second, count in entry.num_reqs_per_sec.items() if count]
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": round(entry.total_rps, 2),
        "p50_ms": entry.get_response_time_percentile(0.5),
        "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
        "max_ms": round(entry.max_response_time or 0, 2),
        # requests over the seconds from its first to its last (a storm phase's own rate)
        "span_rps": round(entry.num_requests / (max(seconds) - min(seconds) + 1), 2)
        if seconds
        else 0.0,
    }


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (locust runs in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gates(options: Namespace, total: dict[str, Any]) -> list[str]:
    """The SLA gates that failed, each named by its option and with the figures."""
    failed = []
    if options.sla_p99_ms is not None and total["p99_ms"] > options.sla_p99_ms:
        failed.append(f"sla-p99-ms: p99 {total['p99_ms']} ms > {options.sla_p99_ms} ms")
    if options.sla_min_rps is not None and total["rps"] < options.sla_min_rps:
        failed.append(f"sla-min-rps: {total['rps']} req/s < {options.sla_min_rps} req/s")
    if options.sla_max_failures is not None and total["failures"] > options.sla_max_failures:
        failed.append(
            f"sla-max-failures: {total['failures']} failures > {options.sla_max_failures}"
        )
    if total["user_exceptions"]:
        failed.append(f"user-exceptions: {total['user_exceptions']} raised in the users")
    if total["requests"] == 0:
        failed.append("no-requests: the run made no request")
    return failed


def run(options: Namespace) -> int:
    """Make the run; its exit status (0, :data:`EXIT_SLA` or :data:`EXIT_ERROR`)."""
    procs = local.Processes(keep_logs=options.out / "logs")  # the service's, for after
    main = gevent.getcurrent()
    # gevent runs these in a greenlet of their own; they raise Stop in the main one, which
    # then stops the load (if running) and every process started, by pid, in `finally`.
    handlers = [
        gevent.signal_handler(sig, gevent.kill, main, Stop)
        for sig in (signal.SIGTERM, signal.SIGINT)
    ]
    try:
        return _run(options, procs)
    except Stop:
        print("loadtest: stopped by a signal", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        procs.stop_all()
        for handler in handlers:
            handler.cancel()


def _start_local(options: Namespace, procs: local.Processes) -> local.LocalDeployment:
    """What ``--local`` runs against: signer and its Redis, or the naive baseline."""
    if options.baseline_naive:
        kind = "v1" if options.v1_sdkappid else "v2"
        print(f"loadtest: starting {options.instances} naive {kind} server(s)...")
        deployment = local.start_naive(
            procs,
            instances=options.instances,
            v1_sdkappid=options.v1_sdkappid,
            v2_sdkappid=options.v2_sdkappid,
        )
        print(f"loadtest: baseline up at {', '.join(deployment.urls)} (POST /usersig, no cache)")
        return deployment
    print(f"loadtest: starting {options.instances} signer instance(s) and Redis...")
    deployment = local.start_local(
        procs,
        instances=options.instances,
        cluster=options.cluster,
        v1_sdkappid=options.v1_sdkappid,
        v2_sdkappid=options.v2_sdkappid,
    )
    print(f"loadtest: up at {', '.join(deployment.urls)}; cache {deployment.cache_url}")
    return deployment


def _run(options: Namespace, procs: local.Processes) -> int:
    if options.users is None:
        options.users = DEFAULT_USERS[options.scenario]
    sdkappids = [a for a in (options.v1_sdkappid, options.v2_sdkappid) if a]
    cache_url = ""  # the Redis of --local (signer only), reported after the run
    if options.local:
        deployment = _start_local(options, procs)
        hosts, api_key, cache_url = deployment.urls, deployment.api_key, deployment.cache_url
        keys = load_keys(
            options.v1_sdkappid,
            deployment.v1_public_key,
            options.v2_sdkappid,
            deployment.v2_secret_file,
        )
    else:
        hosts = [h.strip().rstrip("/") for h in options.target.split(",") if h.strip()]
        api_key = options.api_key_file.read_text().strip()
        keys = load_keys(
            options.v1_sdkappid, options.v1_public_key, options.v2_sdkappid, options.v2_secret_file
        )
        if not keys:
            print("loadtest: no app keys given: only the cheap checks, no full verification")
    checker = TokenChecker(keys, options.min_remaining, options.verify_rate)
    ctx = scenarios.Context(hosts, api_key, sdkappids, checker, options)
    ctx.naive = bool(options.baseline_naive)
    if options.scenario == "storm":
        space = options.userid_space
        wanted = options.users * options.logins_per_user
        ctx.storm_userids = random.sample(range(space), min(wanted, space))
    scenarios.CONTEXT = ctx

    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)
    shape = scenarios.StormShape() if options.scenario == "storm" else None
    env = Environment(
        user_classes=scenarios.user_classes(options.scenario, options),
        shape_class=shape,
        locustfile="loadtest/scenarios.py",
        stop_timeout=5,
    )
    runner = env.create_local_runner()
    csv_writer = locust.stats.StatsCSVFileWriter(
        env, locust.stats.PERCENTILES_TO_REPORT, str(out / "locust"), full_history=True
    )
    background = [
        gevent.spawn(csv_writer.stats_writer),
        gevent.spawn(locust.stats.stats_history, runner),
    ]
    before = [scrape(host) for host in hosts] if not ctx.naive else []
    cpu_before = _cpu_seconds()
    started = time.time()
    at_warm: dict[str, Any] = {}
    if shape is not None:
        # The warm phase starts once every cold login is answered (StormUser sets it),
        # however long the cold phase takes: a phase's figures are its own.
        ctx.warm_at = math.inf

        def snapshot() -> None:  # the cache and /metrics as the warm phase starts
            while time.perf_counter() < ctx.warm_at:
                gevent.sleep(0.05)
            at_warm["metrics"] = [scrape(host) for host in hosts] if not ctx.naive else []
            at_warm["redis"] = local.redis_report(cache_url) if cache_url else []

        background.append(gevent.spawn(snapshot))
        runner.start_shape()
    else:
        runner.start(options.users, spawn_rate=options.spawn_rate or options.users)
    stopper = gevent.spawn_later(options.run_time, runner.quit)
    try:
        # A shape that ends only stops the runner (locust quits it in its own headless
        # mode, not as a library): wait for either.
        while len(runner.greenlet) and runner.state != "stopped":
            gevent.sleep(0.1)
    finally:
        stopper.kill()
        if len(runner.greenlet):
            runner.quit()
        elapsed = time.time() - started
        for greenlet in background:
            greenlet.kill()
        csv_writer.close_files()
    locust_cpu = _cpu_seconds() - cpu_before
    after = [scrape(host) for host in hosts] if not ctx.naive else []
    redis = local.redis_report(cache_url) if cache_url else []
    for node in redis:
        print(
            f"loadtest: Redis on port {node['port']} after the run: {node.get('keys')} keys, "
            f"used_memory_human {node.get('used_memory_human')}"
        )

    stats = runner.stats
    total = _entry(stats.total)
    total["user_exceptions"] = sum(e["count"] for e in runner.exceptions.values())
    (out / "report.html").write_text(get_html_report(env, show_download_link=False))
    summary: dict[str, Any] = {
        "scenario": options.scenario,
        "target": "local" if options.local else options.target,
        "baseline_naive": ctx.naive,
        "instances": len(hosts),
        "cluster": bool(options.cluster),
        "users": options.users,
        "run_seconds": round(elapsed, 2),
        "requests": total["requests"],
        "failures": total["failures"],
        "failures_by_kind": dict(checker.problems),
        "rps": total["rps"],
        "p50_ms": total["p50_ms"],
        "p95_ms": total["p95_ms"],
        "p99_ms": total["p99_ms"],
        "user_exceptions": total["user_exceptions"],
        "tokens_checked": checker.checked,
        "tokens_verified": checker.verified,
        "full_verification": sorted(str(a) for a in keys),
        "by_name": {
            f"{e.method} {e.name}": _entry(e) for e in locust.stats.sort_stats(stats.entries)
        },
        "errors": [
            {"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in stats.errors.values()
        ],
        "service": _metrics_delta(before, after) if before else {"available": False},
        "redis": redis,
        # the storm, as its warm phase starts (cold requests still in flight then included
        # in the warm part): /metrics since the start, and the Redis nodes
        "at_warm_start": {
            "service": _metrics_delta(before, at_warm["metrics"])
            if before and at_warm.get("metrics")
            else {"available": False},
            "redis": at_warm.get("redis", []),
        }
        if shape is not None
        else None,
        # this process (locust and the harness): CPU seconds, and their share of all cores
        "locust_cpu_seconds": round(locust_cpu, 2),
        "locust_cpu_share": round(locust_cpu / (elapsed * (os.cpu_count() or 1)), 3)
        if elapsed
        else None,
    }
    failed = gates(options, total)
    summary["sla"] = {"passed": not failed, "failed": failed}

    def quitting(environment: Environment, **_: object) -> None:
        environment.process_exit_code = EXIT_SLA if failed else 0

    env.events.quitting.add_listener(quitting)
    env.events.quitting.fire(environment=env, reverse=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print(summary, out)
    for gate in failed:
        print(f"loadtest: SLA gate failed: {gate}", file=sys.stderr)
    return int(env.process_exit_code or 0)


def _print(summary: dict[str, Any], out: Path) -> None:
    service = summary["service"]
    print(
        f"loadtest {summary['scenario']}: {summary['requests']} requests, "
        f"{summary['failures']} failures {summary['failures_by_kind'] or ''}, "
        f"{summary['rps']} req/s, p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
        f"p99 {summary['p99_ms']} ms; tokens checked {summary['tokens_checked']}, "
        f"fully verified {summary['tokens_verified']}"
    )
    if service.get("available"):
        print(
            f"loadtest: service: {service['signatures_computed']} signatures computed, "
            f"cache hit ratio {service['cache_hit_ratio']}, "
            f"shared cache errors {service['cache_errors']}, "
            f"dropped writes {service['dropped_writes']}"
        )
    print(f"loadtest: results in {out}/ (summary.json, report.html, locust_*.csv)")
