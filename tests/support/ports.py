"""Free TCP ports on the loopback interface, for servers started by tests and benchmarks."""

from __future__ import annotations

import socket


def free_port(below: int = 65536) -> int:
    """A free port under ``below`` (cluster nodes also need port + 10000 for their bus)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port
