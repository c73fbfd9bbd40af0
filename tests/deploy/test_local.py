"""``bash deploy/local/up`` and ``down``: the real topology on this machine, started and
stopped as a user would, from the shell scripts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.processes import Tracked, descendants, start_time
from deploy.local.redis import cluster_layout
from signer.core import load_public_key, verify

ROOT = Path(__file__).resolve().parents[2]
V1_APP = 1400000001

pytestmark = [pytest.mark.processes, pytest.mark.redis]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "local" / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _post(url: str, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``up --instances 2`` in a directory of this module's; ``down`` afterwards in any case."""
    directory = tmp_path_factory.mktemp("deploy-local")
    started = _run("up", "--dir", str(directory), "--instances", "2")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((directory / "state.json").read_text())
        yield {"dir": directory, "state": state, "stdout": started.stdout}
    finally:
        _run("down", "--dir", str(directory))


class TestUp:
    def test_up_prints_the_url_the_api_key_file_and_the_logs(
        self, deployment: dict[str, Any]
    ) -> None:
        """What a user needs next is on the screen: where to send requests, the key to send
        and where to look when something goes wrong."""
        out, state = deployment["stdout"], deployment["state"]
        assert f"url:          {state['url']}" in out
        assert f"api key file: {state['api_key_file']}" in out
        assert f"logs:         {state['logs']}/" in out
        assert "bash deploy/local/down" in out

    def test_the_url_is_nginx_balancing_every_instance(self, deployment: dict[str, Any]) -> None:
        """Tokens come through nginx's URL, verify with the app's public key, and every
        instance answers some of them (each logs the requests it served)."""
        state = deployment["state"]
        api_key = Path(state["api_key_file"]).read_text().strip()
        public = load_public_key(Path(state["v1_public_key"]).read_bytes())
        for n in range(20):
            userid = f"balanced-{n}"
            answer = _post(
                state["url"] + "/v1/usersig", api_key, {"sdkappid": V1_APP, "userid": userid}
            )
            verify(answer["usersig"], userid=userid, sdkappid=V1_APP, key=public)
        logs = Path(state["logs"])
        for instance in state["instances"]:
            log = (logs / f"{instance['name']}.log").read_text()
            assert '"route":"/v1/usersig","status":200' in log, instance["name"]
        assert "nginx" in {p["name"] for p in state["processes"]}

    def test_trace_through_nginx_gets_signer_s_json_405_with_allow(
        self, deployment: dict[str, Any]
    ) -> None:
        """TRACE, which nginx refuses itself before choosing a location, is answered as
        signer answers any method a route lacks: 405 in JSON, with the Allow header.
        Catches: nginx's own HTML 405 without Allow (schemathesis' ST204, found against
        this deployment)."""
        request = urllib.request.Request(f"{deployment['state']['url']}/healthz", method="TRACE")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        assert refused.value.headers["Allow"] == "GET,HEAD"
        assert json.loads(refused.value.read())["error"]["code"] == "method_not_allowed"

    def test_the_cache_is_a_cluster_of_three_masters_with_a_replica_each(
        self, deployment: dict[str, Any]
    ) -> None:
        """Three masters serve the slots, each with one replica in sync."""
        cluster = deployment["state"]["cluster"]
        layout = cluster_layout(cluster["masters"][0])
        assert sorted(layout) == sorted(cluster["masters"])
        assert all(len(replicas) == 1 for replicas in layout.values())

    def test_every_process_is_tracked_by_pid_and_start_time(
        self, deployment: dict[str, Any]
    ) -> None:
        """6 redis-servers, the instances and nginx: each record names a live process."""
        records = [Tracked(**p) for p in deployment["state"]["processes"]]
        names = sorted(r.name for r in records)
        assert names == sorted(["nginx", "signer-0", "signer-1", *(f"redis-{i}" for i in range(6))])
        assert all(r.running() for r in records)

    def test_up_again_says_it_runs_and_starts_nothing(self, deployment: dict[str, Any]) -> None:
        """A second ``up`` reports the running deployment instead of starting a copy."""
        directory = deployment["dir"]
        before = (directory / "state.json").read_text()
        again = _run("up", "--dir", str(directory), "--instances", "2")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert deployment["state"]["url"] in again.stdout
        assert (directory / "state.json").read_text() == before


class TestAlertRules:
    def test_every_series_the_alert_rules_name_is_exported(
        self, deployment: dict[str, Any]
    ) -> None:
        """Each ``signer_*`` series in deploy/prometheus/alerts.yml is in the /metrics of a
        running instance (after the requests above), with the labels the rule selects."""
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
        exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
        named = {name for expr in exprs for name in re.findall(r"\b(signer_\w+)", expr)}
        # keep-warm is off in deploy/local: its series are checked by tests/service/test_warm.py
        named = {name for name in named if not name.startswith("signer_keepwarm_")}
        assert len(named) >= 8
        url = deployment["state"]["instances"][0]["url"]
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        exported = {
            sample.name: sample.labels
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert named <= set(exported), sorted(named - set(exported))
        for expr in exprs:  # label matchers name labels the series have
            for name, labels in re.findall(r"\b(signer_\w+)\{([^}]*)\}", expr):
                for label in re.findall(r"(\w+)\s*=~?", labels):
                    assert label in exported[name], (name, label)


class TestHostileClients:
    def test_held_and_slow_connections_through_nginx_leave_others_served(
        self, deployment: dict[str, Any], tmp_path: Path
    ) -> None:
        """``bench/connections.py siege``, short: 300 connections held open and idle and
        30 slowloris clients through nginx, while a good client asks for a token every
        50 ms on new connections. Every held connection stays open, nginx cuts every slow
        one at its header timeout (10 s), and the good client gets only 200s.
        Catches: nginx's or an instance's limits starving other clients, slow clients
        held forever, the long run's figures (docs/RELIABILITY.md) coming from a broken
        script."""
        state = deployment["state"]
        figures = tmp_path / "siege.json"
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "connections.py"),
                "siege",
                "--url",
                state["url"],
                "--connections",
                "300",
                "--slow",
                "30",
                "--seconds",
                "13",
                "--processes",
                "2",
                "--api-key-file",
                state["api_key_file"],
                "--state",
                str(deployment["dir"] / "state.json"),
                "--json",
                str(figures),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(figures.read_text())
        assert result["held_outcomes"] == {"held to the end": 300}
        assert "still open" not in result["slow_outcomes"], result["slow_outcomes"]
        assert sum(result["slow_outcomes"].values()) == 30
        for stretch in ("before", "during", "after"):
            good = result["good_client"][stretch]
            assert good["requests"] > 0 and good["outcomes"] == {"200": good["requests"]}, good
        assert set(result["resident_mb"]) == {"nginx", "redis", "signer"}


class TestDown:
    def test_down_stops_every_process_up_started_and_their_children(
        self, deployment: dict[str, Any]
    ) -> None:
        """After ``down`` no tracked process, signing worker or nginx worker is left, and
        ``status`` says nothing runs."""
        directory = deployment["dir"]
        records = [Tracked(**p) for p in deployment["state"]["processes"]]
        tree = descendants([r.pid for r in records])
        assert len(tree) > len(records)  # signing workers, nginx's worker
        stopped = _run("down", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        assert f"stopped {len(records)} processes" in stopped.stdout
        assert [pid for pid, start in tree.items() if start_time(pid) == start] == []
        status = subprocess.run(
            [sys.executable, "-m", "deploy.local", "status", "--dir", str(directory)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert status.returncode == 3
        assert "nothing runs" in status.stdout
