"""deploy/kubernetes: built by kustomize, validated against the official schemas offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from linemon.config import load_config
from tests.deploy.tools import DEPLOY, run, tool

K8S = DEPLOY / "kubernetes"
# The oldest Kubernetes still in wide use and the newest the validator knows.
VERSIONS = ["1.30.0", None]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = run(tool("kustomize"), "build", K8S)
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("k8s") / "linemon.yaml"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def objects(built: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(built.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def workload(objects: dict, kind: str, name: str) -> dict[str, Any]:
    return objects[(kind, name)]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v or "newest")
def test_manifests_match_the_official_schemas(built: Path, version: str | None) -> None:
    args = ["--strict", "--quiet"] + (["-k", version] if version else [])
    result = run(tool("kubernetes-validate"), *args, built, K8S / "secrets.example.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_an_unknown_field(built: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = re.sub(r"( +)readOnlyRootFilesystem: true",
                  r"\1readOnlyRootFilesystem: true\n\1readOnlyRootFileSystem: true",
                  built.read_text(), count=1)
    broken.write_text(text)
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", broken)
    assert result.returncode != 0
    assert "readOnlyRootFileSystem" in result.stdout + result.stderr


def pods(objects: dict) -> list[tuple[str, dict[str, Any]]]:
    return [(name, d["spec"]["template"]["spec"]) for (kind, name), d in objects.items()
            if kind in ("Deployment", "StatefulSet")]


def test_every_pod_is_hardened_and_bounded(objects: dict) -> None:
    found = pods(objects)
    assert {name for name, _ in found} == {"linemon-engine", "linemon-api"}
    for name, spec in found:
        assert spec["automountServiceAccountToken"] is False, name
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] >= 1000, name
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= c["resources"][bound].keys(), (name, bound)
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert c["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz"), name
            assert not c["image"].endswith(":latest") and ":" in c["image"], name
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"
    assert workload(objects, "Deployment", "linemon-api")["containers"][0][
        "readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_engines_keep_their_spool_on_a_claim(objects: dict) -> None:
    engine = objects[("StatefulSet", "linemon-engine")]["spec"]
    claims = {t["metadata"]["name"] for t in engine["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in engine["template"]["spec"]["containers"][0][
        "volumeMounts"]}
    assert mounts["spool"] == "/var/lib/linemon" and "spool" in claims
    plant = load_config(K8S / "plant.yaml")
    assert str(plant.historian.spool.path).startswith("/var/lib/linemon/")
    assert engine["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def secret_refs(spec: dict[str, Any]) -> dict[str, str]:
    """env var -> Secret name."""
    return {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for c in spec["containers"] for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}


def test_each_role_gets_only_its_own_secrets(objects: dict) -> None:
    engine = secret_refs(workload(objects, "StatefulSet", "linemon-engine"))
    api = secret_refs(workload(objects, "Deployment", "linemon-api"))
    assert not set(engine.values()) & set(api.values())
    assert engine["LINEMON_INFLUX_TOKEN"] == "linemon-influx-writer"
    assert api["LINEMON_INFLUX_TOKEN"] == "linemon-influx-reader"
    assert not any(name.startswith("LINEMON_KEY_") for name in engine)
    plant = load_config(K8S / "plant.yaml")
    needed_by_engine = {s.username_env for s in plant.sources} | {
        s.password_env for s in plant.sources} | {plant.historian.backend.token_env}
    assert needed_by_engine - {None} <= engine.keys()
    assert {k.key_env for k in plant.api.keys} | {plant.historian.backend.token_env} <= api.keys()


def test_every_referenced_secret_is_documented(objects: dict) -> None:
    examples = {d["metadata"]["name"]: set((d.get("stringData") or d.get("data")).keys())
                for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text())}
    for _, spec in pods(objects):
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples[ref["name"]], ref
        for v in spec["volumes"]:
            if "secret" in v:
                assert v["secret"]["secretName"] in examples
    pki = examples["linemon-opcua-pki"]
    plant = load_config(K8S / "plant.yaml")
    for source in plant.sources:
        paths = [getattr(source, "ca_file", None)]
        security = getattr(source, "security", None)
        if security is not None:
            paths += [security.certificate, security.private_key,
                      *security.trusted_server_certificates]
        for path in filter(None, paths):
            assert path.parent == Path("/etc/linemon/pki") and path.name in pki, path


def test_engine_groups_cover_every_line_once(objects: dict) -> None:
    groups = next(d["data"] for (kind, name), d in objects.items()
                  if kind == "ConfigMap" and name.startswith("linemon-engine-groups"))
    engine = objects[("StatefulSet", "linemon-engine")]["spec"]
    assert sorted(groups) == [f"linemon-engine-{i}" for i in range(engine["replicas"])]
    assigned = [line for lines in groups.values() for line in lines.split(",")]
    plant = load_config(K8S / "plant.yaml")
    assert sorted(assigned) == sorted(line.id for line in plant.lines)


def test_the_plant_config_map_is_plant_yaml(objects: dict) -> None:
    data = next(d["data"] for (kind, name), d in objects.items()
                if kind == "ConfigMap" and name.startswith("linemon-plant-"))
    assert data["plant.yaml"] == (K8S / "plant.yaml").read_text()


def test_each_pod_command_builds_its_role_from_the_plant_config(
        objects: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The StatefulSet's and the Deployment's `linemon run` flags against plant.yaml: every
    engine group and the API role start (up to the network), with their pods' secrets."""
    from linemon.serve import build_app

    plant = load_config(K8S / "plant.yaml")
    groups = next(d["data"] for (kind, name), d in objects.items()
                  if kind == "ConfigMap" and name.startswith("linemon-engine-groups"))
    engine_env = set(secret_refs(workload(objects, "StatefulSet", "linemon-engine")))
    api_env = set(secret_refs(workload(objects, "Deployment", "linemon-api")))
    api_args = workload(objects, "Deployment", "linemon-api")["containers"][0]["args"]
    assert api_args[api_args.index("--role") + 1] == "api"
    for env, role_groups in ((engine_env, groups.items()), (api_env, [(None, None)])):
        with monkeypatch.context() as m:
            for name in env:
                m.setenv(name, f"{name.lower()}-secret-value-0123456789")
            for pod, lines in role_groups:
                if pod is None:
                    app = build_app(plant, "api", None, None)
                    assert app.url_path_for("list_lines") == "/api/v1/lines"
                else:
                    app = build_app(plant, "engine", lines, pod)
                    assert app.url_path_for("readyz") == "/readyz"
                    sliced = app.state.linemon.config
                    assert [ln.id for ln in sliced.lines] == lines.split(",")
                    assert sliced.historian.spool.path.parent.name == pod
