"""The connection layer of a real `signer serve` process, tried with raw sockets as a
hostile or broken client would: malformed HTTP, slow headers, too many connections. What
counts is what the client gets back and what reaches the log."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.service.conftest import (
    API_KEY,
    V1_APP,
    V2_APP,
    Deployment,
    make_deployment,
    write_config,
)
from tests.service.test_process import Server, serve

pytestmark = pytest.mark.processes

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 40
BACKLOG = 777


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Deployment]]:
    """One service for the module, with short header timeouts and a low connection cap."""
    directory = tmp_path_factory.mktemp("guarded")
    deployment = make_deployment(directory)
    settings = {
        "header_timeout": HEADER_TIMEOUT,
        "max_connections": MAX_CONNECTIONS,
        "backlog": BACKLOG,
        "log_level": "debug",
    }
    write_config(directory, server=settings)
    with serve(directory, "--config", str(deployment.config)) as server:
        yield server, deployment


def connect(server: Server, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response: status, headers (lower-case names), body by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed it (a reset counts: bytes the client sent after the
    close make the kernel answer with one)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(raw)
        return read_response(sock)


def assert_json_error(status: int, headers: dict[str, str], body: bytes) -> str:
    assert 400 <= status < 600, status
    assert headers["content-type"].startswith("application/json"), headers
    error = orjson.loads(body)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return str(error["code"])


def hostile_requests(token: str) -> dict[str, bytes]:
    """Requests aiohttp cannot parse or route, each carrying the API key or a token."""
    key = API_KEY.encode()
    sig = token.encode()
    long = sig * (17000 // len(sig) + 1)  # past the 16384-byte request line limit
    verify_body = orjson.dumps({"sdkappid": V1_APP, "userid": "u", "usersig": token})
    return {
        "control byte in Authorization": b"POST /v1/usersig HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + key + b"\x01\r\nContent-Length: 2\r\n\r\n{}",
        "bare LF line endings": b"POST /v1/verify HTTP/1.1\nHost: x\nAuthorization: Bearer "
        + key
        + b"\nContent-Type: application/json\nContent-Length: %d\n\n" % len(verify_body)
        + verify_body,
        "NUL in the path": b"GET /v1/usersig\x00" + sig + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "URL over 16 kB": b"GET /v1/usersig?userid="
        + long
        + b"&k="
        + key
        + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "header line over 8 kB": b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key
        + b"\r\nX-Token: "
        + long
        + b"\r\n\r\n",
        "bad method": b"G\x01T /v1/usersig?k=" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "TLS on the HTTP port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + key,
        "bad version": b"GET /?" + sig + b" HTTP/7.3\r\nHost: x\r\n\r\n",
        "bad Content-Length": b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + key
        + b"\r\nContent-Length: 1x\r\n\r\n"
        + verify_body,
        "Content-Length with chunked": b"POST /v1/verify HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + key + b"\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, key) for i in range(200))
        + b"\r\n",
        "space before colon": b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer "
        + key
        + b"\r\n\r\n",
        "CONNECT": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"Authorization: Bearer " + key + b"\r\nConnection: close\r\n\r\n",
        "OPTIONS *": b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "newline in the path": b"GET /v1/%0a" + sig + b" HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
        "bytes that are not UTF-8": b"GET /\xff\xfe HTTP/1.1\r\nHost: \xff\r\n"
        b"Connection: close\r\n\r\n",
    }


class TestMalformedRequests:
    def test_each_gets_a_json_error_and_no_secret_reaches_the_log(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """Whatever a client sends, the answer is our JSON error (echoing nothing), and
        the log has one short line for it: no traceback, no API key, no token."""
        server, deployment = guarded
        token = httpx.post(
            f"{server.url}/v1/usersig",
            json={"sdkappid": V2_APP, "userid": "victim"},
            headers=deployment.headers(),
        ).json()["usersig"]
        for name, raw in hostile_requests(token).items():
            status, headers, body = exchange(server, raw)
            code = assert_json_error(status, headers, body)
            assert status in (400, 404), (name, status, code)
            assert API_KEY.encode() not in body and token[:24].encode() not in body, name
        time.sleep(0.3)  # the last lines reach the file
        log = server.log()
        assert "Traceback" not in log
        fragments = [API_KEY, API_KEY[:12], API_KEY[-12:], token, token[:24], token[-24:]]
        fragments += [token[i : i + 24] for i in range(0, len(token) - 24, 24)]
        for fragment in fragments:
            assert fragment not in log, f"{fragment[:8]}... in the log"
        for line in log.splitlines():
            assert len(line) < 400, line[:200]

    def test_a_flood_of_them_costs_a_bounded_number_of_log_lines(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """Anyone can send garbage without authenticating: past ten lines a second the
        log says how many similar lines it withheld instead of writing each."""
        server, _ = guarded
        time.sleep(1.5)  # a full log budget, whatever ran before
        before = server.log().count("malformed request")
        for _ in range(300):
            exchange(server, b"G@T / HTTP/1.1\r\n\r\n")
        time.sleep(0.5)
        exchange(server, b"G@T / HTTP/1.1\r\n\r\n")
        time.sleep(0.3)
        log = server.log()
        written = log.count("malformed request") - before
        assert 5 <= written <= 60, written
        withheld = [int(n) for n in re.findall(r'"withheld": ?(\d+)', log)]
        assert withheld and sum(withheld) >= 300 - written - 10, withheld


class TestSlowClients:
    def test_headers_that_trickle_past_the_timeout_get_408_and_are_closed(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """Slowloris: connections that send a header byte now and then are answered 408
        and closed once ``header_timeout`` has passed since their first byte, while other
        clients are served."""
        server, _ = guarded
        slow = []
        for _ in range(25):
            sock = connect(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        outcomes: list[int] = []
        started = time.monotonic()
        while slow and time.monotonic() - started < HEADER_TIMEOUT + 4:
            for sock in list(slow):
                sock.settimeout(0.01)
                try:
                    sock.sendall(b"a")
                    status, headers, body = read_response(sock)
                except TimeoutError:
                    continue
                assert assert_json_error(status, headers, body) == "header_timeout"
                outcomes.append(status)
                sock.settimeout(2)
                assert closed_by_server(sock)
                sock.close()
                slow.remove(sock)
            assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
            time.sleep(0.2)
        assert outcomes == [408] * 25
        assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9

    def test_a_connection_that_never_sends_a_byte_is_closed(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """A silent connection holds a slot only for ``header_timeout``."""
        server, _ = guarded
        with connect(server) as sock:
            started = time.monotonic()
            status, headers, body = read_response(sock)
            assert (status, assert_json_error(status, headers, body)) == (408, "header_timeout")
            assert HEADER_TIMEOUT * 0.9 <= time.monotonic() - started < HEADER_TIMEOUT + 3

    def test_an_idle_kept_alive_connection_is_not_cut_by_the_header_timeout(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """Between requests a connection is idle, not slow: the next request may come
        later than ``header_timeout`` (keep-alive has its own timeout)."""
        server, _ = guarded
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        with connect(server) as sock:
            sock.sendall(request)
            assert read_response(sock)[0] == 200
            time.sleep(HEADER_TIMEOUT * 1.8)
            sock.sendall(request)
            assert read_response(sock)[0] == 200

    def test_headers_sent_in_pieces_within_the_timeout_are_served(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """A slow but honest client is not cut off."""
        server, _ = guarded
        body = orjson.dumps({"sdkappid": V2_APP, "userid": "piecemeal"})
        raw = (
            b"POST /v1/usersig HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        with connect(server) as sock:
            for start in range(0, len(raw), len(raw) // 5 + 1):
                sock.sendall(raw[start : start + len(raw) // 5 + 1])
                time.sleep(HEADER_TIMEOUT / 8)
            status, _, answer = read_response(sock)
        assert status == 200 and orjson.loads(answer)["userid"] == "piecemeal"


class TestConnectionLimits:
    def test_connections_beyond_the_cap_get_503_and_are_closed(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """With ``max_connections`` open (kept alive), one more is refused at once with a
        JSON 503 and Retry-After; once some close, new connections are served again."""
        server, _ = guarded
        time.sleep(0.3)  # connections of earlier tests are gone
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        held = []
        try:
            for _ in range(MAX_CONNECTIONS):
                sock = connect(server)
                sock.sendall(request)
                assert read_response(sock)[0] == 200
                held.append(sock)
            with connect(server) as extra:
                status, headers, body = read_response(extra)
                assert assert_json_error(status, headers, body) == "too_many_connections"
                assert status == 503 and headers["retry-after"] == "1"
                assert closed_by_server(extra)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert re.search(r"^signer_http_connections_refused_total [1-9]", metrics, re.M)
        assert re.search(r"^signer_http_header_timeouts_total [1-9]", metrics, re.M)

    def test_the_configured_backlog_is_the_kernels(
        self, guarded: tuple[Server, Deployment]
    ) -> None:
        """The accept queue is ``[server] backlog`` long, not aiohttp's default 128 (a
        burst of connections beyond it waits unanswered in SYN queues)."""
        server, _ = guarded
        assert listen_backlogs(server.port) == [BACKLOG]


def listen_backlogs(port: int) -> list[int]:
    """The accept-queue length of each socket listening on ``port`` (ss's Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(int(line.split()[2]) for line in out.splitlines() if line.strip())


def test_every_http_process_listens_with_the_configured_backlog(
    tmp_path: Path, deployment: Deployment
) -> None:
    """Under the supervisor each child's socket keeps the backlog the parent asked for
    (aiohttp listens on it again, with 128 unless told)."""
    write_config(deployment.directory, server={"processes": 2, "backlog": BACKLOG})
    with serve(tmp_path, "--config", str(deployment.config)) as server:
        assert listen_backlogs(server.port) == [BACKLOG, BACKLOG]


def test_many_connections_at_once_are_all_answered(guarded: tuple[Server, Deployment]) -> None:
    """A burst of short connections, ten times the cap, arriving together: each gets an
    answer (200, or 503 when the cap is reached), none waits unanswered."""
    server, _ = guarded
    results: list[int | str] = []

    def client() -> None:
        try:
            with connect(server, timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                results.append(read_response(sock)[0])
        except OSError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=client) for _ in range(MAX_CONNECTIONS * 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) <= {200, 503}, [r for r in results if r not in (200, 503)][:5]
    assert results.count(200) >= MAX_CONNECTIONS
