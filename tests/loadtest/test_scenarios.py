"""Smoke runs of every loadtest scenario against a local deployment, each as a subprocess
(``python -m loadtest``): locust and gevent never enter the pytest process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.processes]


def loadtest(out: Path, *args: str, check_rc: int | None = 0) -> tuple[int, str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADTEST_", "SIGNER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "loadtest", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    output = done.stdout + done.stderr
    if check_rc is not None:
        assert done.returncode == check_rc, output[-4000:]
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    )
    return done.returncode, output, summary


def assert_real(summary: dict, out: Path) -> None:
    assert summary["requests"] > 0
    assert summary["failures"] == 0 and summary["failures_by_kind"] == {}
    assert summary["user_exceptions"] == 0
    assert summary["tokens_checked"] > 0
    assert summary["rps"] > 0 and summary["p99_ms"] >= summary["p50_ms"] > 0
    assert summary["service"]["available"] and summary["service"]["signatures_computed"] > 0
    assert summary["sla"] == {"passed": True, "failed": []}
    for name in ("report.html", "locust_stats.csv", "locust_failures.csv"):
        assert (out / name).stat().st_size > 0, name
    logs = {log.name: log.stat().st_size for log in (out / "logs").glob("*.log")}
    assert logs.get("signer-0.log", 0) > 0, logs  # kept, and read by the suite's leak search


def test_storm_cold_then_warm(tmp_path):
    """A storm's users each fetch a distinct userid once cold and once warm: twice as many
    requests as users, one signature per user (the warm half all cache hits), every token
    checked and some fully verified.
    Catches: a storm that re-signs warm userids, shares userids, or checks nothing."""
    users = 6
    _, _, summary = loadtest(
        tmp_path,
        "storm",
        "--local",
        "--users",
        str(users),
        "--storm-seconds",
        "0.5",
        "--run-time",
        "4",
        "--verify-rate",
        "1",
    )
    assert_real(summary, tmp_path)
    names = summary["by_name"]
    assert names["POST storm cold"]["requests"] == users
    assert names["POST storm warm"]["requests"] == users
    assert summary["tokens_checked"] == summary["tokens_verified"] == 2 * users
    assert summary["service"]["signatures_computed"] == users
    assert summary["service"]["cache_lookups"]["hit"] >= users


def test_storm_users_log_in_several_userids_and_warm_waits_for_every_cold_login(tmp_path):
    """With --logins-per-user 3, 4 users log in 12 distinct userids cold, then the same 12
    warm; the warm phase begins only once all 12 cold logins are answered (the snapshot
    taken as it starts has all 12 signatures), and warm signs nothing.
    Catches: users sharing userids, a warm phase that overlaps the cold one, a userid
    logged in once only."""
    _, _, summary = loadtest(
        tmp_path,
        "storm",
        "--local",
        "--users",
        "4",
        "--logins-per-user",
        "3",
        "--storm-seconds",
        "0.5",
        "--run-time",
        "8",
    )
    assert_real(summary, tmp_path)
    names = summary["by_name"]
    assert names["POST storm cold"]["requests"] == names["POST storm warm"]["requests"] == 12
    assert summary["at_warm_start"]["service"]["signatures_computed"] == 12
    assert summary["service"]["signatures_computed"] == 12


def test_stampede_signs_each_hot_userid_once(tmp_path):
    """Many users asking for the same 3 userids of 2 apps get checked tokens, and the
    service signs at most one token per userid and app.
    Catches: a stampede that bypasses the cache, or a summary not reading /metrics."""
    _, _, summary = loadtest(
        tmp_path, "stampede", "--local", "--users", "8", "--hot-userids", "3", "--run-time", "2"
    )
    assert_real(summary, tmp_path)
    assert summary["tokens_verified"] > 0
    assert summary["service"]["signatures_computed"] <= 6
    assert summary["service"]["cache_hit_ratio"] > 0.5


def test_batch_checks_every_token_of_every_batch(tmp_path):
    """Each POST /v1/usersig/batch of 200 userids yields 200 checked tokens.
    Catches: a batch harness checking only the first token, or none."""
    _, _, summary = loadtest(
        tmp_path, "batch", "--local", "--users", "2", "--batch-size", "200", "--run-time", "2"
    )
    assert_real(summary, tmp_path)
    assert summary["tokens_checked"] == 200 * summary["by_name"]["POST batch 200"]["requests"]


def test_verify_tampered_tokens_fail_with_their_codes(tmp_path):
    """Good tokens verify (ok, code 0) and each kind of tampering (signature, userid,
    sdkappid, expired) comes back ok: false with its code, none counted as a failure.
    Catches: a verify endpoint accepting tampered tokens, or a wrong expected code."""
    _, _, summary = loadtest(
        tmp_path, "verify", "--local", "--users", "4", "--tamper-share", "0.5", "--run-time", "2"
    )
    assert_real(summary, tmp_path)
    names = summary["by_name"]
    for kind in ("signature", "userid", "sdkappid", "expired"):
        assert names[f"POST verify tampered {kind}"]["requests"] > 0, kind
    assert names["POST verify good"]["requests"] > 0


def test_mixed_does_every_kind_of_request(tmp_path):
    """The mixed scenario, with weights given, makes warm and cold singles, batches,
    verifies and DELETEs, all answered as expected.
    Catches: a weight parsed wrong (a task never runs) or a wrong DELETE/verify check."""
    _, _, summary = loadtest(
        tmp_path,
        "mixed",
        "--local",
        "--users",
        "6",
        "--run-time",
        "3",
        "--weights",
        "warm=5,cold=2,batch=1,verify=2,delete=1",
        "--mixed-batch-size",
        "20",
        "--warm-userids",
        "50",
    )
    assert_real(summary, tmp_path)
    names = summary["by_name"]
    for name in (
        "POST mixed warm",
        "POST mixed cold",
        "POST mixed batch",
        "POST mixed verify",
        "DELETE mixed delete",
    ):
        assert names[name]["requests"] > 0, name


def test_cluster_and_two_instances_share_the_cache(tmp_path):
    """With --cluster --instances 2, two signers behind a 3-master Redis Cluster serve the
    users (spread over both) and still sign each hot userid once for both.
    Catches: --cluster not wiring the cluster URL, or users all sent to one instance."""
    _, output, summary = loadtest(
        tmp_path,
        "stampede",
        "--local",
        "--cluster",
        "--instances",
        "2",
        "--users",
        "4",
        "--hot-userids",
        "2",
        "--run-time",
        "2",
    )
    assert_real(summary, tmp_path)
    assert summary["instances"] == 2 and summary["cluster"] is True
    assert "redis+cluster://" in output
    assert summary["service"]["signatures_computed"] <= 4


def test_failed_sla_gate_exits_non_zero_and_names_it(tmp_path):
    """A run whose --sla-min-rps cannot be met exits 1 and names the gate, on stderr and
    in summary.json, while its figures are still written.
    Catches: SLA gates that never fail a CI job, or fail it without saying why."""
    _, output, summary = loadtest(
        tmp_path,
        "stampede",
        "--local",
        "--users",
        "2",
        "--run-time",
        "1",
        "--sla-min-rps",
        "10000000",
        check_rc=1,
    )
    assert "SLA gate failed: sla-min-rps" in output
    assert summary["sla"]["passed"] is False
    assert summary["sla"]["failed"][0].startswith("sla-min-rps:")
    assert summary["requests"] > 0


def test_sigterm_stops_every_process_started(tmp_path):
    """SIGTERM in the middle of a run stops the load and every signer and redis-server it
    started (their ports refuse connections afterwards), without waiting for --run-time.
    Catches: orphaned signer serve or redis-server processes after an interrupted run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOADTEST_", "SIGNER_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest",
            "stampede",
            "--local",
            "--users",
            "2",
            "--run-time",
            "60",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "up at" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
        assert "up at" in line, line
        url = line.split("up at ")[1].split(";")[0]
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)
