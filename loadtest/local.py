"""``--local``: a redis-server (or a 3-master Redis Cluster) and N ``signer serve``
instances on free loopback ports, sharing it, all in one temp dir; stopped by pid.

Every process is started in a session of its own (a Ctrl-C in the terminal reaches only
this harness, which then stops them in order) and with ``PR_SET_PDEATHSIG`` so that none
outlives the harness even if it is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent

SIGNER_CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
processes = 1
log_format = "json"

[engine]
workers = 1

[[apps]]
sdkappid = {v1}
algorithm = "v1"
private_key_file = "keys/v1/private_key"

[[apps]]
sdkappid = {v2}
algorithm = "v2"
secret_file = "keys/v2/secret"

[[callers]]
name = "loadtest"
api_key_file = "keys/caller"
sdkappids = [{v1}, {v2}]

[rate_limit]
enabled = false

[cache]
url = "{cache_url}"
"""


def free_port(below: int = 65536) -> int:
    """A free loopback port; ``below`` bounds it (a cluster node needs port + 10000 too)."""
    for _ in range(200):
        with socket.socket() as sock:
            if below >= 65536:
                sock.bind(("127.0.0.1", 0))
                return int(sock.getsockname()[1])
            port = random.randrange(20000, below)  # noqa: S311 (a port, not a secret)
            try:
                sock.bind(("127.0.0.1", port))
                with socket.socket() as bus:  # the cluster bus port must be free too
                    bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {below}")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the harness exits, however it exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Processes:
    """Everything started here, stopped by pid in reverse order."""

    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)  # removed after the processes

    def start(self, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
        with open(log, "ab") as handle:
            process = subprocess.Popen(  # noqa: S603 (argv built here)
                argv,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.started.append((name, process))
        return process.pid

    def alive(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self.started)

    def stop_all(self) -> None:
        """SIGTERM each, by pid, newest first; SIGKILL what is still there after 15 s."""
        for _, process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()
        self.started.clear()
        for directory in self.directories:  # the keys, configs and logs of --local
            shutil.rmtree(directory, ignore_errors=True)
        self.directories.clear()


@dataclass
class LocalDeployment:
    """What ``--local`` started: the signer URLs, the API key and the app keys."""

    urls: list[str]
    api_key: str
    v1_public_key: Path
    v2_secret_file: Path
    cache_url: str
    directory: Path


def _wait_ready(probe: str, deadline: float, procs: Processes, name: str, log: Path) -> None:
    """Until ``probe`` answers 200; if process ``name`` exits or ``deadline`` passes first,
    RuntimeError with the end of its ``log``."""
    try:
        _wait(probe, deadline, name, procs, name)
    except RuntimeError as exc:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None


def _wait(probe: str, deadline: float, what: str, procs: Processes, name: str) -> None:
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=2) as answer:  # noqa: S310 (loopback)
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not procs.alive(name):
            raise RuntimeError(f"{what} exited while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready in time")
        time.sleep(0.1)


def _redis_server(
    procs: Processes, directory: Path, name: str, extra: list[str], below: int = 65536
) -> int:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port(below)
    data = directory / name
    data.mkdir()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no", *extra]
    procs.start(name, argv, directory / f"{name}.log")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return port
        if not procs.alive(name) or time.monotonic() > deadline:
            log = (directory / f"{name}.log").read_text(errors="replace")[-1000:]
            raise RuntimeError(f"{name} did not start: {log}")
        time.sleep(0.05)


def start_redis(procs: Processes, directory: Path) -> str:
    port = _redis_server(procs, directory, "redis", [])
    return f"redis://127.0.0.1:{port}/0"


def start_cluster(procs: Processes, directory: Path, masters: int = 3) -> str:
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    cluster += ["--cluster-node-timeout", "2000"]
    ports = [_redis_server(procs, directory, f"redis-{i}", cluster, 55000) for i in range(masters)]
    addresses = [f"127.0.0.1:{port}" for port in ports]
    cli = shutil.which("redis-cli") or "redis-cli"
    subprocess.run(  # noqa: S603
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 20
    for port in ports:
        while True:
            info = subprocess.run(  # noqa: S603
                [cli, "-p", str(port), "CLUSTER", "INFO"], capture_output=True, text=True
            ).stdout
            if "cluster_state:ok" in info:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    return "redis+cluster://" + ",".join(addresses)


def parse_info(text: str) -> dict[str, str]:
    """The ``field:value`` lines of a Redis ``INFO`` answer as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and not name.startswith("#"):
            out[name] = value
    return out


def _command(port: int, *words: str) -> bytes:
    """One RESP command to the Redis on loopback ``port``; its raw answer."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
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
            info = parse_info(_command(port, "INFO", "memory").decode(errors="replace"))
            keys = int(_command(port, "DBSIZE").decode().strip().lstrip(":"))
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


def make_keys(directory: Path) -> dict[str, Path]:
    """Fresh app keys from ``signer keygen`` (v1 and v2, run side by side) and an API key."""
    keys = directory / "keys"
    signer = [PYTHON, "-m", "signer", "keygen"]
    jobs = [
        subprocess.Popen(  # noqa: S603
            [*signer, *kind, "--out", str(keys / out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        for kind, out in (([], "v1"), (["--kind", "v2"], "v2"))
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=60)
        if job.returncode != 0:
            raise RuntimeError(f"signer keygen failed: {output.decode(errors='replace')}")
    caller = keys / "caller"
    caller.write_text(secrets.token_urlsafe(32) + "\n")
    caller.chmod(0o600)
    return {
        "v1_public": keys / "v1" / "public_key",
        "v2_secret": keys / "v2" / "secret",
        "caller": caller,
    }


def start_local(
    procs: Processes, *, instances: int, cluster: bool, v1_sdkappid: int, v2_sdkappid: int
) -> LocalDeployment:
    """Start the cache and ``instances`` signers in a new temp dir; wait for ``/readyz``."""
    directory = Path(tempfile.mkdtemp(prefix="loadtest-"))
    procs.directories.append(directory)
    keys = make_keys(directory)
    cache_url = start_cluster(procs, directory) if cluster else start_redis(procs, directory)
    urls: list[str] = []
    names: list[str] = []
    for index in range(instances):
        port = free_port()
        name = f"signer-{index}"
        config = directory / f"{name}.toml"
        config.write_text(
            SIGNER_CONFIG.format(
                port=port, v1=v1_sdkappid or 1, v2=v2_sdkappid or 2, cache_url=cache_url
            )
        )
        argv = [PYTHON, "-m", "signer", "serve", "--config", str(config)]
        procs.start(name, argv, directory / f"{name}.log", cwd=ROOT)
        urls.append(f"http://127.0.0.1:{port}")
        names.append(name)
    deadline = time.monotonic() + 60
    for url, name in zip(urls, names, strict=True):
        _wait_ready(f"{url}/readyz", deadline, procs, name, directory / f"{name}.log")
    return LocalDeployment(
        urls=urls,
        api_key=keys["caller"].read_text().strip(),
        v1_public_key=keys["v1_public"],
        v2_secret_file=keys["v2_secret"],
        cache_url=cache_url,
        directory=directory,
    )


def start_naive(procs: Processes, *, instances: int, v2_sdkappid: int) -> LocalDeployment:
    """The baseline instead of signer: ``instances`` bench/naive_app.py ``--mode v2``
    servers (Tencent's tls-sig-api-v2 in the request handler, one process each, no cache)
    on free loopback ports, sharing one fresh v2 secret; wait for ``/healthz``."""
    directory = Path(tempfile.mkdtemp(prefix="loadtest-"))
    procs.directories.append(directory)
    keys = make_keys(directory)
    urls: list[str] = []
    deadline = time.monotonic() + 60
    for index in range(instances):
        port = free_port()
        name = f"naive-{index}"
        argv = [PYTHON, str(ROOT / "bench" / "naive_app.py"), "--mode", "v2"]
        argv += ["--port", str(port), "--sdkappid", str(v2_sdkappid)]
        argv += ["--secret-file", str(keys["v2_secret"])]
        procs.start(name, argv, directory / f"{name}.log", cwd=ROOT)
        urls.append(f"http://127.0.0.1:{port}")
        _wait_ready(f"{urls[-1]}/healthz", deadline, procs, name, directory / f"{name}.log")
    return LocalDeployment(
        urls=urls,
        api_key="",
        v1_public_key=keys["v1_public"],
        v2_secret_file=keys["v2_secret"],
        cache_url="",
        directory=directory,
    )
