"""``--local``: a redis-server (or a 3-master Redis Cluster) and N ``signer serve``
instances on free loopback ports, sharing it, all in one temp dir; stopped by pid.

The processes are started and stopped by :mod:`deploy.local.processes` (each in a session
of its own and with ``PR_SET_PDEATHSIG``, so that none outlives the harness even if it is
killed), Redis by :mod:`deploy.local.redis`: the same launcher as ``deploy/local/up``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.config import signer_config
from deploy.local.keys import make_keys
from deploy.local.naive import naive_v1
from deploy.local.processes import Processes, free_port, wait_http
from deploy.local.redis import parse_info, redis_report, start_cluster, start_redis

__all__ = [
    "LocalDeployment",
    "Processes",
    "parse_info",
    "redis_report",
    "start_local",
    "start_naive",
]

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent


def _wait_ready(probe: str, deadline: float, procs: Processes, name: str, log: Path) -> None:
    wait_http(probe, deadline, lambda: procs.alive(name), name, log)


@dataclass
class LocalDeployment:
    """What ``--local`` started: the signer URLs, the API key and the app keys."""

    urls: list[str]
    api_key: str
    v1_public_key: Path
    v2_secret_file: Path
    cache_url: str
    directory: Path


def start_local(
    procs: Processes, *, instances: int, cluster: bool, v1_sdkappid: int, v2_sdkappid: int
) -> LocalDeployment:
    """Start the cache and ``instances`` signers in a new temp dir; wait for ``/readyz``."""
    directory = Path(tempfile.mkdtemp(prefix="loadtest-"))
    procs.directories.append(directory)
    keys = make_keys(directory)
    cache_url = start_cluster(procs, directory).url if cluster else start_redis(procs, directory)
    urls: list[str] = []
    names: list[str] = []
    for index in range(instances):
        port = free_port()
        name = f"signer-{index}"
        config = directory / f"{name}.toml"
        config.write_text(
            signer_config(
                cache_url, port=port, caller="loadtest", v1=v1_sdkappid or 1, v2=v2_sdkappid or 2
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


def start_naive(
    procs: Processes, *, instances: int, v1_sdkappid: int = 0, v2_sdkappid: int = 0
) -> LocalDeployment:
    """The baseline instead of signer: ``instances`` bench/naive_app.py servers (Tencent's
    library in the request handler, one process each, no cache) on free loopback ports,
    sharing fresh keys; wait for ``/healthz``. With ``v1_sdkappid`` they sign that v1 app
    (tls-sig-api 1.4 from its own venv, :mod:`deploy.local.naive`), else the v2 app."""
    directory = Path(tempfile.mkdtemp(prefix="loadtest-"))
    procs.directories.append(directory)
    keys = make_keys(directory)
    if v1_sdkappid:
        python, mode, what = naive_v1()
        print(f"loadtest: the naive v1 servers sign with {what}")
        args = ["--mode", mode, "--sdkappid", str(v1_sdkappid)]
        args += ["--private-key", str(keys["v1_private"]), "--public-key", str(keys["v1_public"])]
    else:
        python = PYTHON
        args = ["--mode", "v2", "--sdkappid", str(v2_sdkappid)]
        args += ["--secret-file", str(keys["v2_secret"])]
    urls: list[str] = []
    deadline = time.monotonic() + 60
    for index in range(instances):
        port = free_port()
        name = f"naive-{index}"
        argv = [python, str(ROOT / "bench" / "naive_app.py"), *args, "--port", str(port)]
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
