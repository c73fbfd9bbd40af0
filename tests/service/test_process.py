"""`signer serve` as a real process: dev mode, logs without secrets, SIGHUP, SIGTERM, bad
configs. These are the behaviours only a whole process shows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from signer.core import load_public_key, verify
from signer.service.server import GC_GEN0_THRESHOLD
from tests.service.conftest import API_KEY, SECRET, V1_APP, V2_APP, Deployment, write_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log_path = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """Child processes, whichever thread started them (the pool starts its workers
        from a helper thread, and Linux lists a child under the thread that forked it)."""
        tasks = Path(f"/proc/{self.process.pid}/task")
        return sorted(
            int(pid) for path in tasks.glob("*/children") for pid in path.read_text().split()
        )


@contextmanager
def serve(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    own_group: bool = False,
    port: int | None = None,
) -> Iterator[Server]:
    """A `signer serve` subprocess on a free port, stopped with SIGTERM on exit. By
    default it is yielded once /readyz answers; ``wait_ready=False`` yields it at once.
    ``own_group`` starts it in a process group of its own, which a test may signal.
    Given a ``port``, the service is expected to take it from its configuration (no
    ``--port`` on its command line)."""
    flags = [] if port is not None else ["--port", str(port := free_port())]
    log = tmp_path / f"serve-{port}.log"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    clean_env.update(env or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "signer", "serve", *flags, *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env,
            start_new_session=own_group,
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 30
        while wait_ready:
            if process.poll() is not None:
                raise AssertionError(f"serve exited {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not become ready:\n" + server.log())
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()  # graceful: the service stops its workers itself
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_dev_mode_with_no_configuration(tmp_path: Path) -> None:
    """No config at all: fresh keys in a logged temp dir, auth off, memory cache, said loudly."""
    with serve(tmp_path) as server:
        r = httpx.post(f"{server.url}/v1/usersig", json={"sdkappid": V1_APP, "userid": "dev"})
        assert r.status_code == 200
        log = server.log()
        assert "DEV MODE" in log and "DISABLED" in log and "in-memory" in log
        # The collector is tuned once the workers are up: default thresholds put 40-55 ms
        # full collections into the p99 (docs/PERFORMANCE.md).
        assert f"gc_threshold=[{GC_GEN0_THRESHOLD}," in log
        keys_dir = next(
            word.split("=", 1)[1] for word in log.split() if word.startswith("keys_dir=")
        )
        public = load_public_key(Path(keys_dir, "public_key").read_bytes())
        verify(r.json()["usersig"], userid="dev", sdkappid=V1_APP, key=public)
        secret = Path(keys_dir, "secret").read_text()
        v2 = httpx.post(
            f"{server.url}/v1/usersig", json={"sdkappid": V2_APP, "userid": "dev"}
        ).json()
        from signer.core import HmacSecret

        verify(v2["usersig"], userid="dev", sdkappid=V2_APP, key=HmacSecret.from_text(secret))


def test_logs_never_contain_secrets_or_tokens(tmp_path: Path, deployment: Deployment) -> None:
    """Traffic of every kind at debug level; no key, secret, API key or token in the logs."""
    config = deployment.config.read_text().replace("[server]", '[server]\nlog_level = "debug"')
    deployment.config.write_text(config)
    headers = deployment.headers()
    tokens: list[str] = []
    with serve(tmp_path, "--config", str(deployment.config)) as server:
        base = server.url
        tokens.append(
            httpx.post(
                f"{base}/v1/usersig", json={"sdkappid": V1_APP, "userid": "s1"}, headers=headers
            ).json()["usersig"]
        )
        tokens.append(
            httpx.get(
                f"{base}/v1/usersig", params={"sdkappid": V2_APP, "userid": "s2"}, headers=headers
            ).json()["usersig"]
        )
        batch = httpx.post(
            f"{base}/v1/usersig/batch",
            json={"sdkappid": V2_APP, "userids": ["b1", "b\n2"]},
            headers=headers,
        ).json()
        tokens.append(batch["results"][0]["usersig"])
        tokens.append(
            httpx.post(
                f"{base}/v1/privatemapkey",
                json={"sdkappid": V2_APP, "userid": "p", "room_id": 7},
                headers=headers,
            ).json()["usersig"]
        )
        httpx.post(
            f"{base}/v1/verify",
            json={"sdkappid": V1_APP, "userid": "x", "usersig": tokens[0]},
            headers=headers,
        )
        httpx.post(
            f"{base}/v1/usersig",
            json={"sdkappid": V1_APP, "userid": "s"},
            headers={"Authorization": "Bearer guessed-key-123"},
        )
        httpx.post(
            f"{base}/v1/usersig",
            content=b"{broken",
            headers={**headers, "Content-Type": "application/json"},
        )
        log = server.log()
    assert (
        '"event": "request"' in log or '"event":"request"' in log
    )  # JSON access lines were written
    pem_lines = [
        line for line in deployment.v1_key.to_pem().decode().splitlines() if "-----" not in line
    ]
    forbidden = [API_KEY, SECRET, "guessed-key-123", "another-secret", *pem_lines, *tokens]
    for secret in forbidden:
        assert secret not in log, f"found {secret[:12]}... in the logs"


def test_sighup_reloads_keys_and_rejects_a_bad_config(
    tmp_path: Path, deployment: Deployment
) -> None:
    """A good new config takes effect with no failed request; a bad one changes nothing."""
    with serve(tmp_path, "--config", str(deployment.config)) as server:
        url, headers = f"{server.url}/v1/usersig", deployment.headers()
        assert (
            httpx.post(url, json={"sdkappid": V1_APP, "userid": "r"}, headers=headers).json()[
                "key_version"
            ]
            == "2"
        )
        failures: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client() as http:
                n = 0
                while not stop.is_set():
                    n += 1
                    r = http.post(
                        url, json={"sdkappid": V1_APP, "userid": f"t{n}"}, headers=headers
                    )
                    if r.status_code != 200:
                        failures.append(r.status_code)

        thread = threading.Thread(target=traffic)
        thread.start()
        write_config(deployment.directory, v1_version="3")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while (
            httpx.post(url, json={"sdkappid": V1_APP, "userid": "r"}, headers=headers).json()[
                "key_version"
            ]
            != "3"
        ):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        stop.set()
        thread.join()
        assert failures == []

        deployment.config.write_text(
            deployment.config.read_text().replace("keys/app2/secret", "keys/app2/missing")
        )
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reload rejected" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert "apps[1].secret_file" in server.log()
        r = httpx.post(url, json={"sdkappid": V2_APP, "userid": "still"}, headers=headers)
        assert r.status_code == 200


def test_sighup_names_a_changed_bind_address_as_needing_a_restart(
    tmp_path: Path, deployment: Deployment
) -> None:
    """The bind address comes from the file: a reload that changes it warns, naming it,
    and the service keeps answering where it is."""
    port = free_port()
    text = deployment.config.read_text()
    deployment.config.write_text(text.replace("[server]\n", f"[server]\nport = {port}\n"))
    with serve(tmp_path, "--config", str(deployment.config), port=port) as server:
        moved = text.replace("[server]\n", f'[server]\nport = {port + 1}\nhost = "127.0.0.2"\n')
        deployment.config.write_text(moved)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "configuration reloaded" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        time.sleep(0.2)
        warning = next(line for line in server.log().splitlines() if "after a restart" in line)
        assert "server.port" in warning and "server.host" in warning
        assert httpx.get(f"{server.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("whole_group", "processes"),
    [(False, "1"), (True, "1"), (True, "2")],
    ids=["process", "process-group", "process-group-supervised"],
)
def test_sigterm_finishes_in_flight_requests_then_exits_0(
    tmp_path: Path, deployment: Deployment, whole_group: bool, processes: str
) -> None:
    """SIGTERM to the service, or to its whole process group as systemd and terminals
    send it: the signing workers outlive the drain, so a batch in flight completes. Under
    a supervisor a child gets SIGTERM twice (from the group, then passed on), which is
    not the second Ctrl-C that stops a drain."""
    big_body = {  # room for 10,000 userids
        "SIGNER_SERVER__MAX_BODY_BYTES": "1000000",
        "SIGNER_SERVER__PROCESSES": processes,
    }
    config = str(deployment.config)
    with serve(tmp_path, "--config", config, env=big_body, own_group=whole_group) as server:
        workers = server.children()
        assert workers
        result: dict[str, object] = {}

        def big_batch() -> None:
            r = httpx.post(
                f"{server.url}/v1/usersig/batch",
                timeout=60,
                headers=deployment.headers(),
                json={"sdkappid": V1_APP, "userids": [f"u{i}" for i in range(10_000)]},
            )
            result["status"], result["count"] = r.status_code, len(r.json()["results"])

        thread = threading.Thread(target=big_batch)
        thread.start()
        deadline = time.monotonic() + 10
        while "signer_engine_queue_depth 0.0" in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "the batch never reached the engine"
            time.sleep(0.005)  # the workers have ~0.3 s of signing ahead of them
        if whole_group:
            os.killpg(server.process.pid, signal.SIGTERM)
        else:
            server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        assert server.process.wait(timeout=30) == 0
        assert result == {"status": 200, "count": 10_000}
        assert "stopped" in server.log()
        for alarm in ("worker process died", "HTTP process died", "asked again"):
            assert alarm not in server.log()
        deadline = time.monotonic() + 10  # the resource tracker exits on its own, shortly
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in workers)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_second_ctrl_c_stops_without_waiting_for_the_drain(
    tmp_path: Path, deployment: Deployment, processes: str
) -> None:
    """The first SIGINT drains (here a request whose body never finishes holds it for up
    to 30 s); the second stops at once, with no process left behind."""
    slow = {
        "SIGNER_SERVER__PROCESSES": processes,
        "SIGNER_SERVER__BODY_TIMEOUT": "30",
        "SIGNER_SERVER__SHUTDOWN_TIMEOUT": "30",
    }
    with serve(tmp_path, "--config", str(deployment.config), env=slow) as server:
        family = server.children()
        with socket.create_connection(("127.0.0.1", server.port)) as trickle:
            trickle.sendall(
                b"POST /v1/usersig HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                b'Content-Length: 100\r\n\r\n{"sdkappid": '
            )
            time.sleep(0.5)  # the handler now waits for the rest of the body
            server.process.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert server.process.poll() is None, "the first Ctrl-C drains"
            started = time.monotonic()
            server.process.send_signal(signal.SIGINT)
            server.process.wait(timeout=10)
            assert time.monotonic() - started < 5
        assert "asked again to stop" in server.log()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in family)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("keys/app1/private_key", "keys/app1/nothing"), "apps[0].private_key_file: cannot read"),
        (
            (
                'algorithm = "v2"\nsecret_file = "keys/app2/secret"',
                'algorithm = "v2"\nprivate_key_file = "keys/app1/private_key"',
            ),
            "apps[1]: a v2 (HMAC) app takes secret_file",
        ),
        (
            (f"sdkappid = {V2_APP}", f"sdkappid = {V1_APP}"),
            f"sdkappid {V1_APP} is configured twice",
        ),
        (("port = 8080", "port = 'x'"), "server.port"),
        (("[[callers]]", "[[nobody]]"), "nobody"),
    ],
)
def test_bad_config_stops_with_a_message_naming_the_field(
    tmp_path: Path, deployment: Deployment, change: tuple[str, str], needle: str
) -> None:
    text = deployment.config.read_text()
    if change[0] == "port = 8080":
        text = text.replace("[server]", "[server]\nport = 8080")
    deployment.config.write_text(text.replace(*change))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    result = subprocess.run(
        [sys.executable, "-m", "signer", "serve", "--config", str(deployment.config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2
    assert needle in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_no_callers_without_disabling_auth_refuses_to_start(
    tmp_path: Path, deployment: Deployment
) -> None:
    text = deployment.config.read_text()
    deployment.config.write_text(text[: text.index("[[callers]]")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
    result = subprocess.run(
        [sys.executable, "-m", "signer", "serve", "--config", str(deployment.config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 2 and "no API keys configured" in result.stderr


def test_environment_overrides_the_file(tmp_path: Path, deployment: Deployment) -> None:
    """SIGNER_* variables win over the TOML file (here: the rate limit's burst)."""
    env = {"SIGNER_RATE_LIMIT__BURST": "1", "SIGNER_RATE_LIMIT__RATE": "0.01"}
    with serve(tmp_path, "--config", str(deployment.config), env=env) as server:
        url, body = f"{server.url}/v1/usersig", {"sdkappid": V1_APP, "userid": "e"}
        assert httpx.post(url, json=body, headers=deployment.headers()).status_code == 200
        assert httpx.post(url, json=body, headers=deployment.headers()).status_code == 429
