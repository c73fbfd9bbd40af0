"""The real topology on this machine, no containers: a Redis Cluster (3 masters with a
replica each) or one standalone redis-server, N ``signer serve`` instances sharing it and
nginx balancing them, all on loopback, in one directory:

    DIR/signer.toml       the one config of every instance (each gets its port from
                          SIGNER_SERVER__PORT, so the command is the image's command)
    DIR/keys/             app keys (v1 P-256, v2 secret) and the API key file ``caller``
    DIR/nginx.conf        the balancer
    DIR/logs/             one log per process
    DIR/state.json        what runs: pids (with their start times), ports, URLs

:class:`Topology` starts and changes it (the fault suite restarts, kills and rotates
through it); ``deploy/local/up`` and ``down`` are :func:`up` and :func:`down`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.config import V1_APP, signer_config
from deploy.local.keys import ROOT, make_keys
from deploy.local.processes import Processes, Tracked, free_port, stop_tracked, wait_http
from deploy.local.proxy import Proxy
from deploy.local.redis import ClusterNodes, port_of, redis_server, redis_url, start_cluster
from deploy.local.tls import Tls, make_certs

DEFAULT_DIR = ROOT / "deploy" / "local" / "run"
CONFIG_NAME = "signer.toml"
IMAGE_CONFIG = "/etc/signer/signer.toml"  # where the image and the manifests mount it

NGINX = """\
# Written by deploy/local: nginx in front of the signer instances.
{user}worker_processes 1;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/logs/nginx-error.log warn;
daemon off;

events {{
    worker_connections 32768;
}}

http {{
    access_log {dir}/logs/nginx-access.log;
    client_body_temp_path {dir}/nginx/body;
    proxy_temp_path {dir}/nginx/proxy;
    fastcgi_temp_path {dir}/nginx/fastcgi;
    uwsgi_temp_path {dir}/nginx/uwsgi;
    scgi_temp_path {dir}/nginx/scgi;
    client_max_body_size 1m;
    client_body_buffer_size 1m;  # bodies stay in memory (signer's own cap is 1 MiB)
    proxy_max_temp_file_size 0;
    client_header_timeout 10s;
    client_body_timeout 10s;

    upstream signer {{
        least_conn;
{servers}
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # nginx answers TRACE itself (an HTML 405 without the Allow header RFC 9110 asks
        # for) before any location is chosen: signer answers it instead, in JSON with Allow.
        error_page 405 = @signer;
        location @signer {{
            proxy_pass http://signer;
        }}
        location / {{
            proxy_pass http://signer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 1s;
            proxy_read_timeout 15s;
            # An instance that is stopping (or gone) refuses or closes: the request goes to
            # another. Every signer call is safe to repeat (a token is minted again, a
            # DELETE is idempotent), hence non_idempotent.
            proxy_next_upstream error timeout http_502 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


@dataclass
class Instance:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Topology:
    """One local deployment in ``directory``. Build it with :meth:`start`."""

    directory: Path
    instances: int = 3
    processes: int = 1  # [server] processes of each instance
    workers: int = 1  # [engine] workers of each HTTP process
    standalone: bool = False  # one redis-server instead of the cluster
    tls: bool = False  # Redis over TLS only (a CA and certificate made in DIR/tls)
    masters: int = 3
    replicas: int = 1
    port: int = 0  # nginx's; 0 = a free one
    shutdown_timeout: float = 10.0
    cache_timeout: float = 0.05
    through_proxy: bool = False  # standalone Redis reached through a Proxy of this process
    detached: bool = False  # outlive this process (deploy/local/up)
    procs: Processes = field(init=False)
    keys: dict[str, Path] = field(init=False, default_factory=dict)
    members: list[Instance] = field(init=False, default_factory=list)
    cluster: ClusterNodes | None = field(init=False, default=None)
    redis_port: int = field(init=False, default=0)
    certs: Tls | None = field(init=False, default=None)
    proxy: Proxy | None = field(init=False, default=None)
    cache_url: str = field(init=False, default="")
    v1_version: str = field(init=False, default="1")
    v1_key: str = field(init=False, default="keys/v1/private_key")
    previous: list[tuple[str, str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.procs = Processes(detached=self.detached, say=lambda line: print(line))

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def config(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key_file(self) -> Path:
        return self.keys["caller"]

    def start(self) -> Topology:
        """Keys, Redis, the instances (waited for ``/readyz``) and nginx. Anything
        started is stopped again if a step fails."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.keys = make_keys(self.directory)
        if self.tls:
            self.certs = make_certs(self.directory / "tls")
        self.start_redis()
        if self.through_proxy:
            self.proxy = Proxy(self.redis_port).start()
        self.write_config()
        self.members = [Instance(f"signer-{i}", free_port()) for i in range(self.instances)]
        for member in self.members:
            self.start_instance(member)
        deadline = time.monotonic() + 90
        for member in self.members:
            self.wait_instance(member, deadline)
        self.start_nginx()

    def start_redis(self) -> None:
        """The standalone server (again on its port, after the first start) or the
        cluster; sets :attr:`cache_url`."""
        if self.standalone:
            port = redis_server(
                self.procs, self.logs, "redis", [], tls=self.certs, port=self.redis_port
            )
            self.redis_port = port
            self.cache_url = redis_url(port, self.certs)
        else:
            self.cluster = start_cluster(
                self.procs, self.logs, self.masters, self.replicas, tls=self.certs
            )
            self.cache_url = self.cluster.url

    # ------------------------------------------------------------- the instances

    def serve_argv(self) -> list[str]:
        """The command of every instance: the image's ``signer serve --config FILE``."""
        return [signer_command(), "serve", "--config", str(self.config)]

    def write_config(self) -> None:
        """The shared config, as it is now (keys, previous keys, cache URL)."""
        text = signer_config(
            redis_url(self.proxy.port) if self.proxy else self.cache_url,
            processes=self.processes,
            workers=self.workers,
            v1_key=self.v1_key,
            v1_version=self.v1_version,
            previous=self.previous,
            shutdown_timeout=self.shutdown_timeout,
            cache_timeout=self.cache_timeout,
        )
        header = (
            "# Written by deploy/local: every instance reads this file; its port comes from\n"
            "# SIGNER_SERVER__PORT. SIGHUP reloads it.\n"
        )
        self.config.write_text(header + text)

    def start_instance(self, member: Instance) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")}
        env["SIGNER_SERVER__PORT"] = str(member.port)
        log = self.logs / f"{member.name}.log"
        self.procs.start(member.name, self.serve_argv(), log, cwd=self.directory, env=env)

    def wait_instance(self, member: Instance, deadline: float) -> None:
        log = self.logs / f"{member.name}.log"
        alive = lambda: self.procs.alive(member.name)  # noqa: E731
        wait_http(f"{member.url}/readyz", deadline, alive, member.name, log)

    def redis_process(self, port: int) -> tuple[str, subprocess.Popen[bytes]]:
        """The name and process of the running redis-server on ``port``."""
        for name, process in self.procs.started:
            argv = [str(a) for a in process.args]  # type: ignore[union-attr]
            if name.startswith("redis") and process.poll() is None and port_of(argv) == port:
                return name, process
        raise LookupError(f"no redis-server runs on port {port}")

    def pid(self, name: str) -> int:
        for started, process in reversed(self.procs.started):
            if started == name and process.poll() is None:
                return process.pid
        raise LookupError(f"{name} is not running")

    def stop_instance(self, member: Instance, timeout: float = 30.0) -> float:
        """SIGTERM one instance and wait for it to exit; the seconds it took."""
        pid = self.pid(member.name)
        process = next(p for n, p in self.procs.started if p.pid == pid)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=timeout)
        return time.monotonic() - began

    def rotate_v1_key(self, before_reload: Callable[[], None] | None = None) -> str:
        """A new v1 key (``signer keygen``) named by a new version, the old one kept as a
        previous key, the config rewritten; ``before_reload()``, then SIGHUP to every
        instance. The new version."""
        old_version, old_key = self.v1_version, self.v1_key
        version = str(int(old_version) + 1)
        out = self.directory / "keys" / f"v1-{version}"
        keygen = [sys.executable, "-m", "signer", "keygen", "--out", str(out)]
        subprocess.run(keygen, check=True, capture_output=True, cwd=ROOT)  # noqa: S603
        self.previous.append((old_version, str(Path(old_key).parent / "public_key")))
        self.v1_version, self.v1_key = version, f"keys/v1-{version}/private_key"
        self.write_config()
        if before_reload is not None:
            before_reload()
        for member in self.members:
            os.kill(self.pid(member.name), signal.SIGHUP)
        return version

    def public_keys(self) -> dict[str, Path]:
        """Every v1 key version -> its public key file."""
        out = {v: self.directory / p for v, p in self.previous}
        out[self.v1_version] = self.directory / Path(self.v1_key).parent / "public_key"
        return out

    # ------------------------------------------------------------- nginx

    def write_nginx(self) -> Path:
        # max_fails=0: an instance that refused (restarting) is tried again at once rather
        # than held down for 10 s, which in a rolling restart leaves no instance at all.
        servers = "\n".join(f"        server 127.0.0.1:{m.port} max_fails=0;" for m in self.members)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        conf = self.directory / "nginx.conf"
        text = NGINX.format(user=user, dir=self.directory, servers=servers, port=self.port)
        conf.write_text(text)
        (self.directory / "nginx").mkdir(exist_ok=True)
        return conf

    def start_nginx(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.port = self.port or free_port()
        conf = self.write_nginx()
        argv = [binary, "-p", str(self.directory), "-c", str(conf)]
        argv += ["-e", str(self.logs / "nginx-error.log")]
        log = self.logs / "nginx.log"
        self.procs.start("nginx", argv, log, cwd=self.directory)
        alive = lambda: self.procs.alive("nginx")  # noqa: E731
        wait_http(f"{self.url}/readyz", time.monotonic() + 30, alive, "nginx", log)

    # ------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "api_key_file": str(self.api_key_file),
            "logs": str(self.logs),
            "config": str(self.config),
            "cache_url": self.cache_url,
            "cluster": None
            if self.cluster is None
            else {"masters": self.cluster.masters, "replicas": self.cluster.replicas},
            "instances": [{"name": m.name, "url": m.url} for m in self.members],
            "serve_argv": self.serve_argv(),
            "v1_public_key": str(self.keys["v1_public"]),
            "v2_secret_file": str(self.keys["v2_secret"]),
            "processes": [t.as_dict() for t in self.procs.tracked()],
        }

    def save(self) -> None:
        path = self.directory / "state.json"
        path.write_text(json.dumps(self.state(), indent=2) + "\n")

    def stop(self) -> int:
        killed = self.procs.stop_all()
        if self.proxy is not None:
            self.proxy.stop()
        (self.directory / "state.json").unlink(missing_ok=True)
        return killed


def signer_command() -> str:
    """The installed ``signer`` entry point of this interpreter's environment."""
    beside = Path(sys.executable).parent / "signer"
    return str(beside) if beside.exists() else shutil.which("signer") or "signer"


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def running(state: dict[str, Any]) -> tuple[list[Tracked], list[Tracked]]:
    """The tracked processes of ``state``: (running, gone)."""
    records = [Tracked(**record) for record in state["processes"]]
    return [r for r in records if r.running()], [r for r in records if not r.running()]


def describe(state: dict[str, Any], directory: Path) -> str:
    cluster = state.get("cluster")
    redis = (
        f"Redis Cluster, masters on ports {', '.join(map(str, cluster['masters']))}"
        if cluster
        else "one redis-server"
    )
    instances = ", ".join(f"{i['name']} {i['url']}" for i in state["instances"])
    key = state["api_key_file"]
    return (
        f"url:          {state['url']}   (nginx in front of {len(state['instances'])} "
        f"signer instances)\n"
        f"api key file: {key}\n"
        f"logs:         {state['logs']}/\n"
        f"config:       {state['config']}   (SIGHUP reloads it)\n"
        f"cache:        {redis} ({state['cache_url']})\n"
        f"instances:    {instances}\n"
        f"stop it with: bash deploy/local/down"
        + ("" if directory == DEFAULT_DIR else f" --dir {directory}")
        + "\n"
        f"try:          curl -s -XPOST {state['url']}/v1/usersig "
        f"-H \"Authorization: Bearer $(cat {key})\" -H 'Content-Type: application/json' "
        f'-d \'{{"sdkappid": {V1_APP}, "userid": "alice"}}\'\n'
    )


def up(directory: Path, **options: Any) -> int:
    """``deploy/local/up``: start the topology detached, unless it already runs here."""
    state = read_state(directory)
    if state is not None:
        alive, gone = running(state)
        if alive and not gone:
            print(f"deploy/local: already running in {directory}\n" + describe(state, directory))
            return 0
        if alive:
            names = ", ".join(r.name for r in gone)
            print(
                f"deploy/local: partly running in {directory} ({names} not running); "
                "run deploy/local/down first",
                file=sys.stderr,
            )
            return 1
    if directory.exists():  # what a previous run left: stale keys, configs and logs
        shutil.rmtree(directory)
    topology = Topology(directory, detached=True, **options)
    print(f"deploy/local: starting in {directory} ...", flush=True)
    topology.start()
    topology.save()
    print(describe(topology.state(), directory), end="")
    return 0


def down(directory: Path) -> int:
    """``deploy/local/down``: stop by pid everything ``up`` started in ``directory``."""
    state = read_state(directory)
    if state is None:
        print(f"deploy/local: nothing runs in {directory}")
        return 0
    alive, _ = running(state)
    killed = stop_tracked([Tracked(**r) for r in state["processes"]], say=print)
    (directory / "state.json").unlink(missing_ok=True)
    print(
        f"deploy/local: stopped {len(alive)} processes"
        + (f" ({killed} had to be killed)" if killed else "")
        + f"; logs kept in {state['logs']}/"
    )
    return 0
