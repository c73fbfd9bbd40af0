"""How locust's users connect: kept alive however many sockets the run holds, and without
waiting for a resolver thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run in a subprocess: gevent's monkey-patching never enters the pytest process.
CLIENT = """
import sys
from gevent import monkey
monkey.patch_all()
import socket
import gevent
import loadtest.scenarios  # installs loadtest.connections, as in a run
from geventhttpclient import HTTPClient

held = [socket.socket() for _ in range(1100)]  # the sockets of a thousand other users
client = HTTPClient("127.0.0.1", int(sys.argv[1]), concurrency=1)
for _ in range(5):
    response = client.get("/")
    assert response.status_code == 200, response.status_code
    response.read()
print(type(gevent.get_hub().resolver).__module__)
print(client._connection_pool._socket_queue.peek().fileno())
"""


class Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: set[int] = set()  # noqa: RUF012 (one server per test)

    def do_GET(self) -> None:
        type(self).connections.add(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Counting.connections = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def run_client(port: int, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if k != "GEVENT_RESOLVER"}, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_a_connection_on_a_descriptor_above_1023_is_reused(server):
    """Five requests in a row from a client whose socket's descriptor is above 1023 (as
    for every user past the first ~1,000 of a run) travel on one connection.
    Catches: geventhttpclient's select()-based liveness check, which cannot take such a
    descriptor and had every request of those users open a new connection."""
    _, descriptor = run_client(server.server_address[1])
    assert int(descriptor) >= 1024  # the case in question
    assert len(Counting.connections) == 1


def test_addresses_are_resolved_on_the_hub_not_on_threads(server):
    """The connections' names are resolved by gevent's blocking resolver, unless the
    environment's GEVENT_RESOLVER names another.
    Catches: gevent's default thread-pool resolver, whose answers wait for the GIL and the
    busy hub: a storm's users opened ~11 connections a second and the last waited up to
    80 s for their first request."""
    resolver, _ = run_client(server.server_address[1])
    assert resolver == "gevent.resolver.blocking"
    resolver, _ = run_client(server.server_address[1], {"GEVENT_RESOLVER": "thread"})
    assert resolver == "gevent.resolver.thread"
