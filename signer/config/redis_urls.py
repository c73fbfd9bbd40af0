"""Redis Cluster URLs (``redis+cluster://[user:pass@]host:port[,host:port...]``, and
``rediss+cluster://`` with redis-py's ``ssl_*`` options as query parameters): parsed here,
in the configuration layer, so that a bad one is refused when the configuration is read
rather than in each HTTP process as it builds its cache."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit


def _flag(value: str) -> bool:
    return value.lower() not in ("0", "false", "no", "off", "")


# The TLS options a cluster URL may carry (the names redis-py's rediss:// URLs take).
TLS_OPTIONS: dict[str, Any] = {
    "ssl_ca_certs": str,  # a PEM file of the CAs that signed the nodes' certificates
    "ssl_certfile": str,  # a client certificate, for tls-auth-clients yes
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,  # required (default), optional or none
    "ssl_check_hostname": _flag,
}


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Startup nodes and connection options from a ``redis+cluster://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(f"not a cluster URL: {parts.scheme}://")
    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"the port of node {name or host!r} is not a port: {port!r}")
        nodes.append((name or "127.0.0.1", int(port or 6379)))
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss+cluster"}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in TLS_OPTIONS:
            raise ValueError(
                f"unknown cluster URL option {name!r}: use {', '.join(sorted(TLS_OPTIONS))}"
            )
        options[name] = TLS_OPTIONS[name](value)
    if parts.username:
        options["username"] = parts.username
    if parts.password:
        options["password"] = parts.password
    return nodes, options
