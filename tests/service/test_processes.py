"""`[server] processes = 2`: two HTTP processes on one port under a supervisor."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from signer.engine.cpus import usable_cpus
from signer.service.supervisor import listening_sockets
from tests.service.conftest import V1_APP, V2_APP, Deployment, write_config
from tests.service.test_process import Server, serve
from tests.support import RedisServer


def two_processes(deployment: Deployment, v1_version: str = "2") -> Path:
    """The deployment's config, served by two HTTP processes."""
    return write_config(deployment.directory, v1_version=v1_version, server={"processes": 2})


def http_processes(server: Server) -> list[int]:
    """The supervisor's children that serve HTTP (not multiprocessing's resource tracker)."""
    return [
        pid
        for pid in server.children()
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        path = Path(f"/proc/{pending.pop()}/task")
        for task in path.glob("*/children") if path.exists() else []:
            for child in map(int, task.read_text().split()):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def signed_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        float(value)
        for value in re.findall(r"^signer_tokens_signed_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    )


def wait_for(condition: object, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.1)


@pytest.mark.processes
class TestAutomaticCount:
    def test_auto_with_a_shared_cache_runs_one_process_per_core_and_says_so(
        self, tmp_path: Path, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """``processes = "auto"`` (the default) with a ``[cache] url``: the supervisor runs
        one HTTP process per core, and its start-up line names the count and why.

        Catches: "auto" read as one process, or a count chosen without a word."""
        config = write_config(
            deployment.directory, server={"processes": "auto"}, cache={"url": redis_server.url}
        )
        cores = min(64, usable_cpus())
        with serve(tmp_path, "--config", str(config)) as server:
            wait_for(lambda: len(http_processes(server)) == cores, f"{cores} HTTP processes")
            line = next(
                json.loads(line)
                for line in server.log().splitlines()
                if "supervising HTTP processes" in line
            )
            assert (line["processes"], line["chosen"]) == (
                cores,
                f"auto: one per usable CPU ({cores}), with a shared cache",
            )


@pytest.mark.processes
class TestSeveralProcesses:
    def test_both_answer_on_one_port_and_metrics_add_up(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """Connections spread over both processes (their request ids carry different
        process tags), and /metrics of either reports the signatures of both."""
        with serve(tmp_path, "--config", str(two_processes(deployment))) as server:
            assert len(http_processes(server)) == 2
            tags = set()
            for n in range(60):  # a new connection each: the kernel spreads them
                r = httpx.post(
                    f"{server.url}/v1/usersig",
                    json={"sdkappid": V2_APP, "userid": f"spread{n}"},
                    headers=deployment.headers(),
                )
                assert r.status_code == 200
                tags.add(r.headers["X-Request-ID"][:16])
            assert len(tags) == 2
            wait_for(lambda: signed_total(server.url) == 60, "60 signatures in /metrics")

    def test_sighup_reaches_every_process_and_sigterm_leaves_nothing(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """A reload reaches both processes; SIGTERM stops them, their signing workers
        and the supervisor, with exit status 0."""
        config = two_processes(deployment)
        with serve(tmp_path, "--config", str(config)) as server:
            family = descendants(server.process.pid)
            assert len(family) >= 4  # two HTTP processes, each with a signing worker
            two_processes(deployment, v1_version="3")
            server.process.send_signal(signal.SIGHUP)

            def all_rotated() -> bool:
                versions = {
                    httpx.post(
                        f"{server.url}/v1/usersig",
                        json={"sdkappid": V1_APP, "userid": f"rot{n}"},
                        headers=deployment.headers(),
                    ).json()["key_version"]
                    for n in range(20)
                }
                return versions == {"3"}

            wait_for(all_rotated, "every process signs with key version 3")
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in family), "no process left", 10)

    def test_a_reload_asked_for_during_start_up_is_kept_and_not_fatal(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """SIGHUPs while the HTTP processes still import and load their keys neither kill
        them (SIGHUP's default action) nor go lost: each process reloads once it is up."""
        config = two_processes(deployment)
        with serve(tmp_path, "--config", str(config), wait_ready=False) as server:
            wait_for(lambda: "supervising HTTP processes" in server.log(), "the supervisor")
            two_processes(deployment, v1_version="3")
            for _ in range(10):  # over the children's first half second
                server.process.send_signal(signal.SIGHUP)
                time.sleep(0.05)
            wait_for(
                lambda: server.log().count("configuration reloaded") >= 2,
                "a reload in each HTTP process",
                30,
            )
            assert "HTTP process died" not in server.log()
            assert len(http_processes(server)) == 2

    def test_metrics_of_a_killed_supervisor_are_swept_up(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """A supervisor killed by SIGKILL leaves its metrics directory behind; the next one
        removes it (its pid is gone), keeps a live supervisor's, and removes its own."""
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        dead = tmp / "signer-metrics-999999999-abc"  # above any pid_max: never alive
        live = tmp / f"signer-metrics-{os.getpid()}-def"
        for directory in (dead, live):
            directory.mkdir()
        config = str(two_processes(deployment))
        with serve(tmp_path, "--config", config, env={"TMPDIR": str(tmp)}) as server:
            own = tmp / f"signer-metrics-{server.process.pid}-"
            assert not dead.exists() and live.exists()
            assert [d for d in tmp.iterdir() if d.name.startswith(own.name)]
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0
        assert sorted(tmp.iterdir()) == [live]

    def test_without_a_cache_url_nothing_is_cached(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """Several processes and no ``[cache] url``: the same userid, asked again and
        again, is signed afresh each time (one in-memory cache per process could not
        honour a DELETE made on another), and each process says so in its log.

        Catches: the per-process memory cache left on (repeats would come back
        ``cached``, from whichever process signed them first)."""
        with serve(tmp_path, "--config", str(two_processes(deployment))) as server:
            answers = [
                httpx.post(  # a new connection each: both processes answer some
                    f"{server.url}/v1/usersig",
                    json={"sdkappid": V1_APP, "userid": "again"},
                    headers=deployment.headers(),
                )
                for _ in range(20)
            ]
            assert [a.status_code for a in answers] == [200] * 20
            assert len({a.headers["X-Request-ID"][:16] for a in answers}) == 2
            assert [a.json()["cached"] for a in answers] == [False] * 20
            assert len({a.json()["usersig"] for a in answers}) == 20
            assert server.log().count("tokens are not cached") == 2

    def test_a_killed_process_is_replaced_and_no_request_fails(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """SIGKILL of one HTTP process: the supervisor starts another, and requests on new
        connections meanwhile are served by the survivor at once, none waiting for the
        replacement to start (the dead process's socket is closed, not left to queue
        them) and none refused."""
        with serve(tmp_path, "--config", str(two_processes(deployment))) as server:
            # /readyz answered from one process; the other may still be starting, and
            # killed before its own "listening" it would leave only two such lines.
            wait_for(lambda: server.log().count('"listening"') == 2, "both processes listening")
            victim = http_processes(server)[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: "HTTP process died" in server.log(), "the supervisor noticing")
            slowest, tags = 0.0, set()
            for n in range(40):
                began = time.monotonic()
                r = httpx.post(
                    f"{server.url}/v1/usersig",
                    json={"sdkappid": V2_APP, "userid": f"after{n}"},
                    headers=deployment.headers(),
                    timeout=30,
                )
                slowest = max(slowest, time.monotonic() - began)
                assert r.status_code == 200
                tags.add(r.headers["X-Request-ID"][:16])
            # Left in the kernel's queue, every other new connection would wait for the
            # replacement: the supervisor's pause (1 s) and its start.
            assert slowest < 0.9, f"a new connection waited {slowest:.2f} s"
            wait_for(
                lambda: len(http_processes(server)) == 2 and victim not in http_processes(server),
                "a replacement process",
            )
            wait_for(lambda: server.log().count('"listening"') == 3, "the replacement listening")
            answers = [
                httpx.post(
                    f"{server.url}/v1/usersig",
                    json={"sdkappid": V2_APP, "userid": f"later{n}"},
                    headers=deployment.headers(),
                )
                for n in range(20)
            ]
            assert [a.status_code for a in answers] == [200] * 20
            # The replacement listens on the port too: new connections spread over both.
            assert len({a.headers["X-Request-ID"][:16] for a in answers}) == 2

    def test_when_every_process_is_killed_new_connections_wait_not_refused(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """SIGKILL of both HTTP processes at once: no sibling serves, so the supervisor
        keeps their sockets and requests on new connections wait in the kernel's queue for
        the replacements instead of being refused."""
        with serve(tmp_path, "--config", str(two_processes(deployment))) as server:
            victims = http_processes(server)
            for victim in victims:
                os.kill(victim, signal.SIGKILL)
            wait_for(lambda: server.log().count("HTTP process died") == 2, "both noticed")
            for n in range(10):
                r = httpx.post(
                    f"{server.url}/v1/usersig",
                    json={"sdkappid": V2_APP, "userid": f"after{n}"},
                    headers=deployment.headers(),
                    timeout=30,
                )
                assert r.status_code == 200
            assert not set(victims) & set(http_processes(server))

    def test_a_port_already_served_is_an_error_not_a_share(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """A second `signer serve` with several processes on a port another one already
        serves (with SO_REUSEPORT) stops with one line, instead of taking half its traffic."""
        import subprocess
        import sys

        config = two_processes(deployment)
        with serve(tmp_path, "--config", str(config)) as server:
            command = [sys.executable, "-m", "signer", "serve", "--config", str(config)]
            second = subprocess.run(
                [*command, "--port", str(server.port)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert second.returncode == 2
            assert "cannot listen" in second.stderr and "in use" in second.stderr
            assert "Traceback" not in second.stderr


class TestRestart:
    def test_a_port_whose_connections_wait_in_time_wait_is_bound_again(self) -> None:
        """A restart right after serving traffic: the closed connections of the previous
        instance sit in TIME-WAIT on the port, and must not stop the new one binding it
        (the pre-flight probe once bound without SO_REUSEADDR and failed for 60 s)."""
        with socket.create_server(("127.0.0.1", 0)) as previous:
            port = previous.getsockname()[1]
            client = socket.create_connection(("127.0.0.1", port))
            served, _ = previous.accept()
            served.close()  # the server closes first, as a draining instance does
            assert client.recv(1) == b""
            client.close()
        sockets = listening_sockets("127.0.0.1", port, 2)
        for sock in sockets:
            sock.close()

    def test_a_port_another_process_listens_on_is_still_refused(self) -> None:
        """SO_REUSEADDR lets a restart through, not a second service onto a busy port."""
        with (
            socket.create_server(("127.0.0.1", 0), reuse_port=True) as other,
            pytest.raises(OSError, match="in use"),
        ):
            listening_sockets("127.0.0.1", other.getsockname()[1], 2)
