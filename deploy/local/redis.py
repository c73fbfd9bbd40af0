"""redis-server processes on loopback: one standalone server, or a Redis Cluster of
``masters`` masters with ``replicas`` replicas each, all started through
:class:`~deploy.local.processes.Processes` (so stopped by pid).

Also the little Redis talk the harnesses need without a client library: one RESP command
(:func:`command`), ``INFO`` parsed (:func:`parse_info`) and a per-node report.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.processes import Processes, free_port
from deploy.local.tls import Tls

CLUSTER_NODE_TIMEOUT_MS = 2000  # a master unreachable this long is failed over
CLUSTER_OPTIONS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
CLUSTER_OPTIONS += ["--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)]


def redis_server(
    procs: Processes,
    directory: Path,
    name: str,
    extra: list[str],
    below: int = 65536,
    tls: Tls | None = None,
    port: int = 0,
) -> int:
    """Start redis-server ``name`` (data in ``directory/name``, log ``directory/name.log``)
    on ``port`` (0: a free one under ``below``), TLS only with ``tls``, and wait for its
    PONG; its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port(below)
    data = directory / name
    data.mkdir(parents=True, exist_ok=True)
    listen = ["--port", str(port)] if tls is None else tls.server_args(port)
    argv = [binary, *listen, "--bind", "127.0.0.1", "--dir", str(data)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no", *extra]
    procs.start(name, argv, directory / f"{name}.log")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError):
            if command(port, "PING", timeout=0.5, tls=tls).startswith(b"+PONG"):
                return port
        if not procs.alive(name) or time.monotonic() > deadline:
            log = (directory / f"{name}.log").read_text(errors="replace")[-1000:]
            raise RuntimeError(f"{name} did not start: {log}")
        time.sleep(0.05)


def start_redis(procs: Processes, directory: Path, tls: Tls | None = None) -> str:
    """One standalone redis-server; its ``redis://`` URL (``rediss://`` with ``tls``)."""
    port = redis_server(procs, directory, "redis", [], tls=tls)
    return redis_url(port, tls)


def redis_url(port: int, tls: Tls | None = None) -> str:
    """signer's URL of the standalone server on loopback ``port``."""
    if tls is None:
        return f"redis://127.0.0.1:{port}/0"
    return f"rediss://127.0.0.1:{port}/0?{tls.query}"


@dataclass(frozen=True)
class ClusterNodes:
    """The ports of a cluster as created: ``masters[i]`` is replicated by
    ``replicas[i]`` (empty without replicas). Roles change after a failover."""

    masters: list[int]
    replicas: list[list[int]]
    tls: Tls | None = None

    @property
    def ports(self) -> list[int]:
        return [*self.masters, *(p for group in self.replicas for p in group)]

    @property
    def url(self) -> str:
        """signer's URL of the cluster: every master as a startup node."""
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.masters)
        if self.tls is None:
            return f"redis+cluster://{nodes}"
        return f"rediss+cluster://{nodes}?{self.tls.query}"


def start_cluster(
    procs: Processes,
    directory: Path,
    masters: int = 3,
    replicas: int = 0,
    tls: Tls | None = None,
) -> ClusterNodes:
    """``masters`` ``--cluster-enabled`` servers and ``replicas`` replicas of each, joined
    by ``redis-cli --cluster create`` (everything over TLS with ``tls``); returns once every
    node says ``cluster_state:ok`` and every replica is in sync with its master."""
    count = masters * (1 + replicas)
    ports = [
        redis_server(procs, directory, f"redis-{i}", CLUSTER_OPTIONS, below=55000, tls=tls)
        for i in range(count)
    ]
    cli = shutil.which("redis-cli") or "redis-cli"
    addresses = [f"127.0.0.1:{port}" for port in ports]
    create = ["--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
    created = subprocess.run(  # noqa: S603
        [cli, *(tls.cli_args() if tls else []), *create, "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if created.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-1000:]}")
    deadline = time.monotonic() + 30
    while not all(_cluster_ok(port, tls) for port in ports):
        if time.monotonic() > deadline:
            raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
        time.sleep(0.1)
    layout = cluster_layout(ports[0], tls)
    return ClusterNodes(
        masters=sorted(layout),
        replicas=[sorted(layout[port]) for port in sorted(layout)],
        tls=tls,
    )


def _cluster_ok(port: int, tls: Tls | None) -> bool:
    try:
        info = parse_info(command(port, "CLUSTER", "INFO", tls=tls).decode(errors="replace"))
        if info.get("cluster_state") != "ok":
            return False
        role = parse_info(command(port, "INFO", "replication", tls=tls).decode(errors="replace"))
    except OSError:
        return False
    return role.get("role") == "master" or role.get("master_link_status") == "up"


def cluster_layout(port: int, tls: Tls | None = None) -> dict[int, list[int]]:
    """The cluster as node ``port`` sees it: each master's port -> its replicas' ports
    (nodes marked failed are left out)."""
    text = command(port, "CLUSTER", "NODES", tls=tls).decode(errors="replace")
    ids: dict[str, int] = {}
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or ":" not in parts[1]:
            continue
        node_port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        ids[parts[0]] = node_port
        rows.append((node_port, parts[2].split(","), parts[3]))
    layout: dict[int, list[int]] = {}
    for node_port, flags, _ in rows:
        if "fail" in flags or "fail?" in flags:
            continue
        if "master" in flags:
            layout.setdefault(node_port, [])
    for node_port, flags, master in rows:
        if "slave" in flags and "fail" not in flags and ids.get(master) in layout:
            layout[ids[master]].append(node_port)
    return layout


def port_of(argv: list[str]) -> int | None:
    """The port a redis-server command line listens on (its TLS port if it has one)."""
    for option in ("--tls-port", "--port"):
        if option in argv and argv[argv.index(option) + 1] != "0":
            return int(argv[argv.index(option) + 1])
    return None


def parse_info(text: str) -> dict[str, str]:
    """The ``field:value`` lines of a Redis ``INFO`` answer as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and not name.startswith("#"):
            out[name] = value
    return out


def command(port: int, *words: str, timeout: float = 5.0, tls: Tls | None = None) -> bytes:
    """One RESP command to the Redis on loopback ``port`` (over TLS with ``tls``); its raw
    answer."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout))
        if tls is not None:
            sock = stack.enter_context(tls.context().wrap_socket(sock, server_hostname="127.0.0.1"))
        sock.sendall(request.encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or (data.endswith(b"\r\n") and _complete(data)):
                return data


def _complete(data: bytes) -> bool:
    if data[:1] == b"$":
        head, _, body = data.partition(b"\r\n")
        return len(body) >= int(head[1:]) + 2
    return True


def redis_report(cache_url: str) -> list[dict[str, object]]:
    """Each Redis node of ``cache_url`` (loopback): its port, keys and memory in use, as
    ``redis-cli -p PORT info memory`` and ``dbsize`` give them."""
    addresses = cache_url.split("://", 1)[1].split("/", 1)[0].split(",")
    nodes: list[dict[str, object]] = []
    for address in addresses:
        port = int(address.rsplit(":", 1)[1])
        try:
            info = parse_info(command(port, "INFO", "memory").decode(errors="replace"))
            keys = int(command(port, "DBSIZE").decode().strip().lstrip(":"))
        except (OSError, ValueError) as exc:
            nodes.append({"port": port, "error": str(exc)})
            continue
        nodes.append(
            {
                "port": port,
                "keys": keys,
                "used_memory": int(info.get("used_memory", 0)),
                "used_memory_human": info.get("used_memory_human"),
            }
        )
    return nodes
