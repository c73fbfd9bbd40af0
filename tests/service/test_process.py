"""`signer serve` as a real process: dev mode, logs without secrets, SIGHUP, SIGTERM, bad
configs. These are the behaviours only a whole process shows."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.core import decode, load_public_key, verify
from signer.service.server import GC_GEN0_THRESHOLD
from tests.service.conftest import (
    API_KEY,
    LIMITED_KEY,
    SECRET,
    V1_APP,
    V2_APP,
    Deployment,
    write_config,
)
from tests.support import RedisServer

pytestmark = pytest.mark.processes


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
    """No config at all: fresh keys in a logged temp dir, auth off, memory cache, said loudly;
    and once SIGTERM stops the service, that directory and its private keys are gone.

    Catches: dev mode leaving a signer-dev-* directory of private keys behind on every start.

    The process gets this test's own temp dir as TMPDIR, so the private keys it makes up
    are removed with the test's files, never left in the system's /tmp."""
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    with serve(tmp_path, env={"TMPDIR": str(own_tmp)}) as server:
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
        assert Path(keys_dir).parent == own_tmp
        public = load_public_key(Path(keys_dir, "public_key").read_bytes())
        verify(r.json()["usersig"], userid="dev", sdkappid=V1_APP, key=public)
        secret = Path(keys_dir, "secret").read_text()
        v2 = httpx.post(
            f"{server.url}/v1/usersig", json={"sdkappid": V2_APP, "userid": "dev"}
        ).json()
        from signer.core import HmacSecret

        verify(v2["usersig"], userid="dev", sdkappid=V2_APP, key=HmacSecret.from_text(secret))
    # serve() stopped it with SIGTERM and waited for it to exit.
    assert server.process.returncode == 0, server.log()
    assert not Path(keys_dir).exists()
    assert not list(own_tmp.glob("signer-dev-*"))


REDIS_PASSWORD = "redis-pass-6c1d0e9b47a2f853"

# Injected into the server process (as sitecustomize, from PYTHONPATH): the first response
# for userid "boom" fails after its token is signed and cached, so the edge logs an
# unhandled error from a stack whose frames hold the token, the request and its headers.
# A second request for "boom" returns that token, for the test to look for in the log.
FAULT_HOOK = """
import signer.service.handlers as handlers

_token_body = handlers.token_body
_failed = []


def token_body(issued):
    body = _token_body(issued)
    if issued.userid == "boom" and not _failed:
        _failed.append(issued.usersig)
        raise RuntimeError("injected by the test after signing")
    return body


handlers.token_body = token_body
"""


def secret_forms(value: bytes) -> list[str]:
    """``value`` as text, hex (both cases) and base64 (standard and URL-safe, unpadded)."""
    b64 = base64.b64encode(value).decode().rstrip("=")
    forms = [value.hex(), value.hex().upper(), b64, b64.replace("+", "-").replace("/", "_")]
    if value.isascii():
        forms.append(value.decode())
    return forms


def token_parts(token: str) -> list[str]:
    """Pieces of a token a log line might carry: 16-character windows of the token itself,
    and its signature field, whole and in windows."""
    signature = str(decode(token)["TLS.sig"])
    parts = [signature]
    for text in (token, signature):
        parts += [text[i : i + 16] for i in range(0, max(1, len(text) - 15), 8)]
    return parts


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_logs_never_contain_secrets_or_tokens(
    tmp_path: Path, deployment: Deployment, redis_server: RedisServer, log_format: str
) -> None:
    """Traffic of every kind at debug level, through a password-protected Redis that then
    dies, and a request that fails with an unhandled error after its token was signed: no
    key, secret, API key, Redis password or token appears in the logs, whole, in part, in
    hex or in base64.

    Catches: a log line that carries a request's headers or body, a token (or its
    signature), a key file's contents or an app's secret in any encoding, the ``[cache]
    url`` with its password (start-up, health lines, Redis errors), or an unhandled
    error's line that renders the frames' locals (rich tracebacks do by default)."""
    redis_server.cli("CONFIG", "SET", "requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    extra = f'\n[cache]\nurl = "{url}"\ntimeout = 0.5\nbreaker_failures = 2\n'
    config = write_config(deployment.directory, extra).read_text()
    server_settings = f'[server]\nlog_level = "debug"\nlog_format = "{log_format}"'
    deployment.config.write_text(config.replace("[server]", server_settings))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAULT_HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    headers = deployment.headers()
    tokens: list[str] = []
    with serve(tmp_path, "--config", str(deployment.config), env={"PYTHONPATH": path}) as server:
        base = server.url
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["details"]["cache"]["up"] is True  # the password was taken
        for _ in range(2):  # the second is served from Redis: the password is in use
            first = httpx.post(
                f"{base}/v1/usersig", json={"sdkappid": V1_APP, "userid": "s1"}, headers=headers
            ).json()
            tokens.append(first["usersig"])
        assert first["cached"] is True
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
        tokens += [result["usersig"] for result in batch["results"] if "usersig" in result]
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
        boom = {"sdkappid": V1_APP, "userid": "boom"}
        failed = httpx.post(f"{base}/v1/usersig", json=boom, headers=headers)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "internal_error"
        request_id = failed.headers["X-Request-ID"]
        served = httpx.post(f"{base}/v1/usersig", json=boom, headers=headers).json()
        assert served["cached"] is True  # the token the failing request's frames held
        tokens.append(served["usersig"])
        _wait_for_line(server, "unhandled error")
        redis_server.kill()  # the error path of the cache: its failures and health lines
        for n in range(5):
            httpx.post(
                f"{base}/v1/usersig", json={"sdkappid": V2_APP, "userid": f"d{n}"}, headers=headers
            )
        _wait_for_line(server, "cache unreachable")
        log = server.log()
    unhandled = [line for line in log.splitlines() if "unhandled error" in line]
    assert unhandled and request_id in unhandled[0]
    assert "Traceback" in log  # the error path wrote its traceback, the part checked here
    key = serialization.load_pem_private_key(deployment.v1_key.to_pem(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    pem_lines = [
        line for line in deployment.v1_key.to_pem().decode().splitlines() if "-----" not in line
    ]
    forbidden = [
        "guessed-key-123",
        *pem_lines,
        *secret_forms(API_KEY.encode()),
        *secret_forms(LIMITED_KEY.encode()),
        *secret_forms(SECRET.encode()),
        *secret_forms(b"another-secret"),
        *secret_forms(REDIS_PASSWORD.encode()),
        *secret_forms(scalar),
        *secret_forms(der),
        *[part for token in tokens for part in token_parts(token)],
    ]
    for secret in forbidden:
        assert secret not in log, f"found {secret[:12]}... in the logs"
    assert sum(request_id in line for line in log.splitlines()) == 2  # and its access line


def _wait_for_line(server: Server, text: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} line in:\n{server.log()}"
        time.sleep(0.05)


def unread_bytes(client: socket.socket) -> int | None:
    """Bytes sent on ``client`` that the server's process has not read yet (our unacked
    send queue plus the receive queue of its end, from /proc/net/tcp), or None while the
    kernel lists no such connection."""
    ours, theirs = client.getsockname()[1], client.getpeername()[1]
    queued: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        tx, rx = (int(queue, 16) for queue in fields[4].split(":"))
        if (local, remote) == (ours, theirs):
            queued["ours"] = tx
        elif (local, remote) == (theirs, ours):
            queued["theirs"] = rx
    return sum(queued.values()) if len(queued) == 2 else None


def wait_until_read(client: socket.socket, seconds: float = 10) -> None:
    """Until the server's process has read everything sent on ``client`` so far: it has
    the request's head, so its handler has started (and now waits for the body)."""
    deadline = time.monotonic() + seconds
    while unread_bytes(client) != 0:
        assert time.monotonic() < deadline, "the server never read the request"
        time.sleep(0.01)


class Trickle:
    """A POST whose head and half its body are sent now, the rest when asked: a request
    in flight (its handler waiting for the body) for as long as the test likes."""

    def __init__(self, port: int, path: str, body: dict[str, object], api_key: str) -> None:
        raw = json.dumps(body).encode()
        self.rest = raw[len(raw) // 2 :]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {api_key}\r\nConnection: close\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw[: len(raw) // 2]
        )

    def finish(self) -> tuple[int, dict[str, object]]:
        """Send the rest of the body; the status and JSON body of the answer."""
        with self.sock:
            self.sock.sendall(self.rest)
            answer = b""
            while chunk := self.sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), f"no HTTP answer: {answer[:200]!r}"
        return int(head.split()[1]), json.loads(body)


@dataclass
class Call:
    started: float
    ended: float
    status: int | None  # None: no answer at all
    key_version: str | None
    error: str | None  # the exception, when there was no answer


class Traffic:
    """``threads`` clients posting token requests back to back until stopped, each call
    recorded with its times; an exception is recorded too, never lost with its thread."""

    def __init__(self, url: str, headers: dict[str, str], threads: int = 3) -> None:
        self.url, self.headers = url, headers
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads)

    def _run(self, client: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    r = http.post(
                        self.url,
                        json={"sdkappid": V1_APP, "userid": f"t{client}-{n}"},
                        headers=self.headers,
                    )
                except Exception as exc:  # a reset connection is a failure to report
                    self.calls.append(Call(started, time.monotonic(), None, None, repr(exc)))
                    continue
                version = r.json().get("key_version") if r.status_code == 200 else None
                self.calls.append(Call(started, time.monotonic(), r.status_code, version, None))

    def count(self, since: float = 0.0) -> int:
        return sum(call.started >= since for call in list(self.calls))

    def wait_for(self, calls: int, since: float = 0.0, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while self.count(since) < calls:
            assert time.monotonic() < deadline, f"fewer than {calls} calls in {seconds} s"
            time.sleep(0.01)


def test_sighup_reloads_keys_and_rejects_a_bad_config(
    tmp_path: Path, deployment: Deployment
) -> None:
    """A good new config takes effect with no failed request: requests before, during and
    after the reload all get 200 (each phase had some), and one whose body was still
    arriving while the new keys took over is answered too. A bad config changes nothing.

    Catches: a reload that aborts a connection with a request in flight (the trickled
    request, or any client of the traffic, gets a reset or no answer: recorded, never lost
    with its thread), one that fails requests while it switches (a non-200), and a test
    run in which no request overlapped the reload at all."""
    with serve(tmp_path, "--config", str(deployment.config)) as server:
        url, headers = f"{server.url}/v1/usersig", deployment.headers()
        first = httpx.post(url, json={"sdkappid": V1_APP, "userid": "r"}, headers=headers)
        assert first.json()["key_version"] == "2"
        with Traffic(url, headers) as traffic:
            traffic.wait_for(30)
            trickle = Trickle(
                server.port, "/v1/usersig", {"sdkappid": V1_APP, "userid": "trickle"}, API_KEY
            )
            wait_until_read(trickle.sock)
            write_config(deployment.directory, v1_version="3")
            hup_at = time.monotonic()
            server.process.send_signal(signal.SIGHUP)
            _wait_for_line(server, "configuration reloaded")
            reloaded_at = time.monotonic()
            status, body = trickle.finish()
            traffic.wait_for(30, since=reloaded_at)
        calls = traffic.calls
        assert [c.error for c in calls if c.error] == []
        assert {c.status for c in calls} == {200}
        before = [c for c in calls if c.ended < hup_at]
        during = [c for c in calls if c.started < reloaded_at and c.ended > hup_at]
        after = [c for c in calls if c.started > reloaded_at]
        phases = {"before": len(before), "during": len(during), "after": len(after)}
        assert all(phases.values()), f"requests per phase: {phases}"
        assert {c.key_version for c in before} == {"2"}
        assert {c.key_version for c in after} == {"3"}
        assert status == 200 and body["userid"] == "trickle", body
        assert body["key_version"] == "3"  # signed once its body came, after the switch

        deployment.config.write_text(
            deployment.config.read_text().replace("keys/app2/secret", "keys/app2/missing")
        )
        server.process.send_signal(signal.SIGHUP)
        _wait_for_line(server, "reload rejected")
        assert "apps[1].secret_file" in server.log()
        r = httpx.post(url, json={"sdkappid": V2_APP, "userid": "still"}, headers=headers)
        assert r.status_code == 200


def test_a_reload_that_raises_min_remaining_retires_cached_tokens(
    tmp_path: Path, deployment: Deployment
) -> None:
    """After SIGHUP raises ``[cache] min_remaining`` above what a cached token has left,
    that token is not served again: a new one is signed.

    Catches: the read-time min_remaining check skipped (``if False``): the entry was
    stored under the old floor and is still in the memory cache."""
    floor = "\n[cache]\nmin_remaining = {}\nrefresh_ahead = {}\n"
    write_config(deployment.directory, floor.format(3600, 3650))
    body = {"sdkappid": V1_APP, "userid": "floor", "expire": 3700}  # 100 s above the floor
    with serve(tmp_path, "--config", str(deployment.config)) as server:
        url, headers = f"{server.url}/v1/usersig", deployment.headers()
        first = httpx.post(url, json=body, headers=headers).json()
        cached = httpx.post(url, json=body, headers=headers).json()
        assert cached["cached"] is True and cached["usersig"] == first["usersig"]
        write_config(deployment.directory, floor.format(4000, 4100))
        server.process.send_signal(signal.SIGHUP)
        _wait_for_line(server, "configuration reloaded")
        again = httpx.post(url, json=body, headers=headers).json()
        assert again["cached"] is False and again["usersig"] != first["usersig"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'signer_cache_lookups_total{result="stale"} 1.0' in metrics


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
        _wait_for_line(server, "after a restart")  # written just after "reloaded"
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
    to 30 s); the second stops at once, with no process left behind.

    Catches: a first Ctrl-C that stops without draining, a second that waits for the
    drain. The drain starts once the server has read the request's head (checked in
    /proc/net/tcp), not after a fixed pause."""
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
            wait_until_read(trickle)  # the handler now waits for the rest of the body
            server.process.send_signal(signal.SIGINT)
            _wait_for_line(server, "stopping: draining")
            time.sleep(1.0)  # a window in which the drain must hold, not a wait
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
