"""deploy/kubernetes: every manifest valid against the Kubernetes API schemas
(kubernetes-validate, strict: an unknown field is an error), and consistent with signer:
probes on its endpoints, a grace period longer than its drain, Secrets mounted where the
ConfigMap's config reads them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from signer.config import build_runtime, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.30.0"  # the oldest release still supported by the major clouds
SUPERVISOR_MARGIN = 10  # signer/service/supervisor.py waits shutdown_timeout + 10 s


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def resource(kind: str) -> dict[str, Any]:
    [found] = [doc for _, doc in documents() if doc["kind"] == kind]
    return found


def container() -> dict[str, Any]:
    spec = resource("Deployment")["spec"]["template"]["spec"]
    [signer] = spec["containers"]
    result: dict[str, Any] = signer
    return result


def config_text() -> str:
    text: str = resource("ConfigMap")["data"]["signer.toml"]
    return text


class TestSchemas:
    @pytest.mark.parametrize(
        ("path", "document"),
        documents(),
        ids=lambda v: v.name if isinstance(v, Path) else v["kind"],
    )
    def test_every_manifest_is_valid_against_the_kubernetes_schemas(
        self, path: Path, document: dict[str, Any]
    ) -> None:
        """Strict validation: a misspelt or misplaced field fails, not only a missing one."""
        kubernetes_validate.validate(document, KUBERNETES, strict=True)

    def test_an_unknown_field_is_caught(self) -> None:
        """The validator is strict (the test above could not pass on a typo)."""
        deployment = resource("Deployment")
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/x"
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, KUBERNETES, strict=True)

    def test_the_kustomization_lists_every_manifest(self) -> None:
        kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
        files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == files

    def test_there_is_one_of_each_kind_the_deployment_needs(self) -> None:
        kinds = sorted(doc["kind"] for _, doc in documents())
        for kind in (
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Service",
        ):
            assert kind in kinds
        assert kinds.count("Secret") == 3


class TestDeployment:
    def test_readiness_is_readyz_and_liveness_is_healthz(self) -> None:
        signer = container()
        assert signer["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert signer["livenessProbe"]["httpGet"]["path"] == "/healthz"
        port = tomllib.loads(config_text())["server"]["port"]
        assert signer["ports"][0]["containerPort"] == port

    def test_the_grace_period_covers_prestop_and_the_drain(self) -> None:
        """SIGKILL comes after terminationGracePeriodSeconds: by then the preStop pause,
        the drain ([server] shutdown_timeout) and the supervisor's own margin are over."""
        spec = resource("Deployment")["spec"]["template"]["spec"]
        pause = int(container()["lifecycle"]["preStop"]["exec"]["command"][-1])
        drain = tomllib.loads(config_text())["server"]["shutdown_timeout"]
        assert spec["terminationGracePeriodSeconds"] > pause + drain + SUPERVISOR_MARGIN

    def test_it_requests_and_limits_resources_and_runs_unprivileged(self) -> None:
        signer = container()
        assert {"cpu", "memory"} <= set(signer["resources"]["requests"])
        assert "memory" in signer["resources"]["limits"]
        pod = resource("Deployment")["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert signer["securityContext"]["readOnlyRootFilesystem"] is True

    def test_processes_match_the_cpu_request(self) -> None:
        """``processes = "auto"`` would count the node's cores, not the pod's: the config
        names as many HTTP processes as the pod requests CPUs."""
        settings = tomllib.loads(config_text())["server"]
        assert settings["processes"] == int(container()["resources"]["requests"]["cpu"])

    def test_the_secrets_are_mounted_where_the_config_reads_them(self, tmp_path: Path) -> None:
        """Laid out as the pod sees it (the ConfigMap at /etc/signer, each Secret at its
        mountPath, a file per key), the config loads: every key file it names is a key of
        a mounted Secret."""
        mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
        volumes = resource("Deployment")["spec"]["template"]["spec"]["volumes"]
        root = Path("/etc/signer")
        base = tmp_path / "etc" / "signer"
        base.mkdir(parents=True)
        (base / "signer.toml").write_text(config_text())
        settings = tomllib.loads(config_text())
        wanted = [app["private_key_file"] for app in settings["apps"]]
        wanted += [caller["api_key_file"] for caller in settings["callers"]]
        secret_dirs = {Path(mounts[v["name"]]).relative_to(root) for v in volumes if "secret" in v}
        for relative in wanted:
            assert Path(relative).parent in secret_dirs, f"{relative} is in no mounted Secret"
            target = base / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_key(target)
        runtime = build_runtime(load_settings(base / "signer.toml"))
        assert [caller.name for caller in runtime.callers] == ["app-servers"]

    def test_the_redis_url_comes_from_a_secret(self) -> None:
        """The URL may carry a password: it is no part of the ConfigMap."""
        [env] = [e for e in container()["env"] if e["name"] == "SIGNER_CACHE__URL"]
        assert env["valueFrom"]["secretKeyRef"]["name"] in {
            doc["metadata"]["name"] for _, doc in documents() if doc["kind"] == "Secret"
        }
        assert "url" not in tomllib.loads(config_text())["cache"]


class TestScaling:
    def test_the_autoscaler_and_budget_target_the_deployment(self) -> None:
        deployment = resource("Deployment")
        labels = deployment["spec"]["selector"]["matchLabels"]
        hpa = resource("HorizontalPodAutoscaler")["spec"]
        assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["minReplicas"] >= 2
        assert resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
        assert resource("Service")["spec"]["selector"] == labels


def _write_key(path: Path) -> None:
    from signer.core import Curve, generate_private_key

    if "callers" in path.parts:
        path.write_text("k" * 40 + "\n")
    else:
        path.write_bytes(generate_private_key(Curve.P256).to_pem())
