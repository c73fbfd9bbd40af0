"""A real redis-server for tests: started on a free port in a temp dir, stopped by pid.

Never someone else's Redis on 6379, never a fake: the behaviours under test (timeouts,
pauses, a server that dies and comes back) are those of the real thing.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.ports import free_port


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, extra: list[str] | None = None) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                *(extra or []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up("redis-server")
        return self

    def _wait_until_up(self, what: str) -> None:
        """Until the server answers PING; stopped, with an error, if it never does."""
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{what} on port {self.port} did not start")
            time.sleep(0.02)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip()

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as an OOM-killed or crashed server would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def command_calls(self, command: str) -> int:
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith(f"cmdstat_{command}:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0


class RedisCluster:
    """A real 3-master Redis Cluster: three ``--cluster-enabled`` servers joined with
    ``redis-cli --cluster create``, each stopped by pid."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", free_port(below=55000)) for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisCluster:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start(self) -> RedisCluster:
        for node in self.nodes:
            node.start(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
            )
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 20
        while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def keys_per_node(self) -> list[int]:
        return [int(n.cli("DBSIZE") or 0) for n in self.nodes]


class SentinelNode(RedisServer):
    """One Sentinel process (``redis-server <conf> --sentinel``), configured by a file of its
    own that it may rewrite, as Sentinel does on every change of state."""

    def start_sentinel(self, config: str) -> SentinelNode:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\nprotected-mode no\n"
            f"logfile {self.directory / 'sentinel.log'}\n{config}"
        )
        self.process = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up("sentinel")
        return self

    def master_state(self, service: str) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` as a dict (empty if this sentinel does not know it)."""
        reply = self.cli("SENTINEL", "MASTER", service).splitlines()
        return dict(zip(reply[::2], reply[1::2], strict=False))

    def master_port(self, service: str) -> int | None:
        reply = self.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service).split()
        return int(reply[-1]) if len(reply) == 2 and reply[-1].isdigit() else None


class RedisSentinel:
    """A master, ``replicas`` replicas of it (``replicaof``) and ``sentinels`` Sentinel
    processes monitoring it as service ``signer``: every one a real redis-server on a free
    port in a temp dir, each stopped by pid. ``start`` returns once every sentinel knows
    the master, every replica and every other sentinel, so a failover can start at once.

    For failover tests: ``down_after_ms`` is how long the master must be unreachable before
    a sentinel holds it down (``quorum`` of them must agree), ``failover_timeout_ms`` how
    long a failover may take before another is tried (Sentinel's defaults: 30 s and 3 min).
    """

    SERVICE = "signer"

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 0,
        sentinels: int = 1,
        quorum: int = 1,
        down_after_ms: int = 30_000,
        failover_timeout_ms: int = 180_000,
    ) -> None:
        self.master = RedisServer(directory / "master")
        self.replicas = [RedisServer(directory / f"replica{i}") for i in range(replicas)]
        self.sentinels = [SentinelNode(directory / f"sentinel{i}") for i in range(sentinels)]
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.SERVICE}"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> RedisSentinel:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave half a deployment running
            raise

    def _start(self) -> RedisSentinel:
        # No 5 s wait before a full sync to a replica (the default since Redis 7).
        self.master.start(["--repl-diskless-sync-delay", "0"])
        for replica in self.replicas:
            replica.start(["--replicaof", "127.0.0.1", str(self.master.port)])
        _wait(
            lambda: all(
                "master_link_status:up" in r.cli("INFO", "replication") for r in self.replicas
            ),
            "the replicas did not sync with the master",
        )
        service = self.SERVICE
        config = (
            f"sentinel monitor {service} 127.0.0.1 {self.master.port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        for sentinel in self.sentinels:
            sentinel.start_sentinel(config)

        def everyone_known() -> bool:
            states = [s.master_state(service) for s in self.sentinels]
            return all(
                state.get("port") == str(self.master.port)
                and state.get("num-slaves") == str(len(self.replicas))
                and state.get("num-other-sentinels") == str(len(self.sentinels) - 1)
                for state in states
            )

        # Sentinels find each other through hello messages on the master, every 2 s.
        _wait(everyone_known, "the sentinels did not discover the replicas and each other")
        return self

    def promoted(self, old_master: RedisServer, timeout: float = 15.0) -> RedisServer:
        """Wait until every sentinel names another server than ``old_master`` as the master
        and that server says it is one; return it."""
        promoted: list[RedisServer] = []

        def done() -> bool:
            ports = {s.master_port(self.SERVICE) for s in self.sentinels}
            if len(ports) != 1 or old_master.port in ports:
                return False
            server = next((r for r in self.servers if r.port in ports), None)
            if server is None or not server.cli("ROLE").startswith("master"):
                return False
            promoted[:] = [server]
            return True

        _wait(done, "sentinel did not promote a replica", timeout)
        return promoted[0]

    def stop(self) -> None:
        # Sentinels first, so none reconfigures a server that is going away.
        for server in [*self.sentinels, *self.replicas, self.master]:
            server.stop()


def _wait(condition: Callable[[], bool], failure: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)
