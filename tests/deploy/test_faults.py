"""The fault suite's short version (``deploy/local/faults --short``): every fault injected
into a real local topology (Redis, two signer instances, nginx) under steady load through
nginx, and what a caller sees: no failed request, no token that fails verification or has
less than ``min_remaining`` left, and the service back to its usual latency soon after."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.faults import FAULTS, Result, run_faults

pytestmark = [pytest.mark.processes, pytest.mark.redis]

RATE = 100  # requests a second through nginx: steady, and light beside 2 shared cores
RECOVERY_S = 6.0  # from the fault's end to the end of the last bad second


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    """Every fault, once, on two shared topologies (a cluster, a standalone Redis)."""
    done = run_faults(list(FAULTS), short=True, rate=RATE, instances=2, say=lambda _: None)
    return {result.name: result for result in done}


@pytest.mark.parametrize("name", list(FAULTS))
def test_no_request_fails_and_every_token_verifies(results: dict[str, Result], name: str) -> None:
    """Under the fault, every request sent through nginx got a good token: verified with
    the key its key_version names, for the userid and app asked, with life enough left."""
    result = results[name]
    assert result.sent > RATE * 3, result
    assert result.failed == 0, (result.failures, result.details)
    assert result.bad_tokens == 0, result.details


@pytest.mark.parametrize("name", list(FAULTS))
def test_latency_is_back_to_normal_soon_after(results: dict[str, Result], name: str) -> None:
    result = results[name]
    assert result.recovery_s < RECOVERY_S, result


def test_a_killed_cluster_master_is_replaced_by_its_replica(results: dict[str, Result]) -> None:
    promoted = results["cluster-master-kill"].notes["replica promoted after (s)"]
    assert promoted is not None and promoted < 10


def test_a_killed_signing_worker_is_replaced(results: dict[str, Result]) -> None:
    replaced = results["worker-kill"].notes["worker replaced after (s)"]
    assert replaced is not None and replaced < 5


def test_new_connections_do_not_wait_for_a_killed_http_process(
    results: dict[str, Result],
) -> None:
    """After one of two HTTP processes is SIGKILLed, new connections straight to the
    instance are served by the other at once, not queued for the replacement's start.
    Only those that reached the dead process's socket in the milliseconds before the
    supervisor closed it are reset (docs/RELIABILITY.md), a handful at most: left open,
    about half would wait a second or more; refused, about half would fail."""
    notes = results["http-process-kill"].notes
    assert notes["replacement up after (s)"] is not None
    assert notes["new connections to it: sent"] > 50
    assert notes["failed"] <= 3, notes
    assert notes["slowest (s)"] < 1.0, notes


def test_a_rotated_key_reaches_every_instance(results: dict[str, Result]) -> None:
    assert results["key-rotation"].notes["every instance on the new key after (s)"] is not None


def test_the_report_is_a_markdown_table_of_every_fault(
    results: dict[str, Result], tmp_path: Path
) -> None:
    from deploy.local.faults import report

    text = report(list(results.values()), short=True, rate=RATE, instances=2)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(FAULTS) + 1  # the header
    assert all(line.count("|") == rows[0].count("|") for line in rows)


def test_what_follows_a_fault_is_split_into_fresh_signatures_and_hits() -> None:
    """After the fault: the answers signed afresh (not cached) in its first 10 s are
    counted, and the hits' own time to recover leaves the slower fresh mints out.
    Catches: a recovery time that calls a cache refilling itself (cold mints slower than
    the baseline of hits) a service not yet recovered, with nothing to tell them apart."""
    from deploy.local.faults import _refill
    from deploy.local.load import Sample

    before = [Sample(t / 10, 0.002, "", cached=True) for t in range(100)]  # 0-10 s: hits
    fresh = [Sample(12 + t / 10, 0.050, "") for t in range(30)]  # 12-15 s: slow mints
    hits = [Sample(12 + t / 10, 0.002, "", cached=True) for t in range(80)]  # 12-20 s
    refill = _refill(before + fresh + hits, began=10.0, ended=11.0)
    assert refill["signed afresh in the 10 s after"] == 30
    assert refill["hits' recovery (s)"] == 0.0
    slow_hit = Sample(14.5, 0.080, "", cached=True)
    assert (
        _refill([*before, *fresh, *hits, slow_hit], began=10.0, ended=11.0)["hits' recovery (s)"]
        == 4.0
    )
