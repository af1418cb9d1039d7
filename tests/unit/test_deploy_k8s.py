"""deploy/k8s/rctc.yaml secures Kafka as `make run` does, read without a cluster.

The manifest is checked against the Kubernetes API's own schemas (kubernetes-validate, offline); its Secrets are
written as the operator would create them (deploy/README.md), and each service's real settings class is built
from the environment and the files its pod would get.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from services.auditor.checkpoints import new_signing_key
from services.cli.settings import CliSettings
from services.common.acls import SERVICES, service_principal
from services.common.registry.document import load_registry
from tests.support.deploy import (
    ROOT,
    SECRET_NAME,
    SETTINGS,
    build,
    k8s_documents,
    unknown_settings,
)

# The Secrets the operator creates before applying the manifest (deploy/README.md lists them).
K8S_SECRETS = {
    "rctc-kafka-ca",
    "rctc-kafka-admin",
    "rctc-auditor-signing-key",
    "rctc-internal",
    "rctc-registry",
    *(f"rctc-kafka-{name}" for name in SERVICES),
}


@pytest.fixture(scope="module")
def operator_secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The Secrets as an operator would create them (deploy/README.md): random passwords, a real CA, a real
    signing key with its public half added to the registry."""
    pem, kid, public = new_signing_key()
    tls = tmp_path_factory.mktemp("cluster") / "tls"
    subprocess.run([str(ROOT / "deploy" / "kafka" / "make-pki.sh"), str(tls)], check=True, timeout=30)
    registry = (ROOT / "deploy" / "registry" / "demo.yaml").read_text()
    registry += f"\naudit:\n  public_keys:\n    - {{id: {kid}, ed25519: {public}}}\n"
    made = {
        "rctc-kafka-ca": {"ca.pem": (tls / "ca.pem").read_text()},
        "rctc-kafka-admin": {"username": "admin", "password": secrets.token_urlsafe(32)},
        "rctc-auditor-signing-key": {"signing.key": pem.decode()},
        "rctc-internal": {"token": secrets.token_hex(32)},
        "rctc-registry": {"registry.yaml": registry},
    }
    return made | {f"rctc-kafka-{name}": {"password": secrets.token_urlsafe(32)} for name in SERVICES}


def pods() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment and Job."""
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def pod(name: str) -> dict[str, Any]:
    return dict(pods())[name]


def config_maps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["data"] for d in k8s_documents() if d["kind"] == "ConfigMap"}


def secret_refs(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(Secret, key) of every value a pod takes from a Secret, by environment or volume."""
    for container in spec["containers"]:
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                yield ref["name"], ref["key"]
    for volume in spec.get("volumes", []):
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        if "secret" in volume:
            sources.append({"name": volume["secret"]["secretName"], **volume["secret"]})
        for source in sources:
            for item in source["items"]:
                yield source["name"], item["key"]


def materialise(
    spec: dict[str, Any], store: dict[str, dict[str, str]], where: Path
) -> tuple[dict[str, str], dict[str, Path]]:
    """A pod's container environment as Kubernetes would give it, its volumes' files written under `where`,
    and its mount paths -> those directories."""
    (container,) = spec["containers"]
    mounts: dict[str, Path] = {}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        local = where / mount["name"]
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", [])]
        if "secret" in volume:
            sources.append({"name": volume["secret"]["secretName"], **volume["secret"]})
        for source in sources:
            for item in source["items"]:
                path = local / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(store[source["name"]][item["key"]])
        mounts[mount["mountPath"]] = local
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        env.update(config_maps()[ref["configMapRef"]["name"]])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = store[ref["name"]][ref["key"]] if ref else var["value"]
    for name, value in env.items():
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                env[name] = str(local / Path(value).relative_to(mount_path))
    return env, mounts


def test_the_manifest_is_valid_kubernetes() -> None:
    """Every document passes the Kubernetes API's own schema, strictly (no unknown field)."""
    for doc in k8s_documents():
        kubernetes_validate.validate(doc, "1.33", strict=True)


def test_the_manifest_references_only_what_exists() -> None:
    """Mounts name the pod's volumes, envFrom names a ConfigMap of the manifest, and every Secret used is one
    deploy/README.md tells the operator to create."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    used: set[str] = set()
    for name, spec in pods():
        (container,) = spec["containers"]
        assert {m["name"] for m in container.get("volumeMounts", [])} <= {v["name"] for v in spec.get("volumes", [])}
        assert {r["configMapRef"]["name"] for r in container["envFrom"]} <= set(config_maps()), name
        used |= {secret for secret, _ in secret_refs(spec)}
    assert used == K8S_SECRETS
    assert [secret for secret in sorted(K8S_SECRETS) if f"`{secret}`" not in readme] == []


def test_the_manifest_writes_no_secret_value() -> None:
    """A secret-named variable comes from a Secret or names a file; the ConfigMap holds no secret."""
    literal = [
        f"{name}.{var['name']}"
        for name, spec in pods()
        for var in spec["containers"][0].get("env", [])
        if SECRET_NAME.search(var["name"]) and "value" in var and not var["value"].startswith("/")
    ]
    literal += [
        key
        for data in config_maps().values()
        for key, v in data.items()
        if SECRET_NAME.search(key) and not v.startswith("/")
    ]
    assert literal == []


def test_every_pod_runs_as_the_images_user_and_reads_secrets_as_its_group() -> None:
    """Non-root as the Dockerfile's uid, group-readable secret files (fsGroup, 0440), read-only root filesystem."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+)$", dockerfile, re.MULTILINE)[-1])
    for name, spec in pods():
        context = spec["securityContext"]
        assert (True, uid, uid) == (context["runAsNonRoot"], context["runAsUser"], context["fsGroup"]), name
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        # Every volume holding secrets; the correlator's emptyDir (faust's directory) holds none.
        secret_volumes = [v for v in spec["volumes"] if "emptyDir" not in v]
        modes = {v.get("projected", v.get("secret", {})).get("defaultMode") for v in secret_volumes}
        assert {0o440} == modes, name


@pytest.mark.parametrize("name", SERVICES)
def test_each_k8s_service_builds_its_settings_as_its_own_principal(
    name: str, operator_secrets: dict[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Deployment's environment and mounted Secrets build the service's real settings: SASL_SSL, its own
    principal with its own Secret's password, the cluster's CA; only the auditor mounts the signing key."""
    spec = pod(name)
    assert ["python", "-m", f"services.{name}"] == spec["containers"][0]["command"]
    env, _ = materialise(spec, operator_secrets, tmp_path)
    assert unknown_settings(SETTINGS[name], env) == []
    kafka = build(SETTINGS[name], env, monkeypatch).kafka
    assert ("SASL_SSL", "SCRAM-SHA-512", service_principal(name)) == (
        kafka.security_protocol,
        kafka.sasl_mechanism,
        kafka.username,
    )
    assert operator_secrets[f"rctc-kafka-{name}"]["password"] == kafka.password.get_secret_value()
    assert operator_secrets["rctc-kafka-ca"]["ca.pem"] == kafka.ca_file.read_text()
    secrets_used = {secret for secret, _ in secret_refs(spec)}
    assert ("rctc-auditor-signing-key" in secrets_used) == (name == "auditor")
    assert {f"rctc-kafka-{other}" for other in SERVICES} & secrets_used == {f"rctc-kafka-{name}"}


def test_the_bootstrap_job_installs_the_passwords_the_deployments_read(
    operator_secrets: dict[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job runs deploy/bootstrap.sh as the admin, with every service's password Secret where the script looks
    for it and the registry Secret (with the auditor's public key) where it applies it from."""
    monkeypatch.chdir(tmp_path)
    spec = pod("rctc-bootstrap")
    assert spec["containers"][0]["command"] == ["/app/deploy/bootstrap.sh"]
    env, _ = materialise(spec, operator_secrets, tmp_path / "pod")
    script_env = {k: env.pop(k) for k in list(env) if k.startswith("RCTC_BOOTSTRAP_")}
    env = {k: v for k, v in env.items() if not k.startswith(("RCTC_OPS__", "RCTC_SHUTDOWN"))}
    kafka = build(CliSettings, env, monkeypatch).kafka
    admin = operator_secrets["rctc-kafka-admin"]
    assert (admin["username"], admin["password"]) == (kafka.username, kafka.password.get_secret_value())
    for name in SERVICES:
        installed = Path(script_env["RCTC_BOOTSTRAP_SECRETS"]) / name / "kafka.password"
        assert operator_secrets[f"rctc-kafka-{name}"]["password"] == installed.read_text()
    registry = load_registry(Path(script_env["RCTC_BOOTSTRAP_REGISTRY"]))
    assert len(registry.audit.public_keys) == 1


def test_only_the_gateway_and_the_console_reach_the_trackers_internal_api() -> None:
    """The two callers hold the internal credential and find the tracker's Service; the tracker's NetworkPolicy
    lets them alone reach its internal port (its ops port stays open for Prometheus); the console may reach only
    the tracker, Kafka and DNS, and its Service is ClusterIP, never published."""
    documents = k8s_documents()
    services_ = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "Service"}
    policies = {
        d["spec"]["podSelector"]["matchLabels"]["app"]: d["spec"] for d in documents if d["kind"] == "NetworkPolicy"
    }
    (tracker_port,) = [p["port"] for p in services_["tracker"]["ports"]]
    holders = sorted(name for name, spec in pods() if ("rctc-internal", "token") in set(secret_refs(spec)))
    assert holders == ["console", "gateway", "tracker"]
    for caller in ("gateway", "console"):
        env = {v["name"]: v.get("value") for v in pod(caller)["containers"][0]["env"]}
        assert f"http://tracker.rctc.svc:{tracker_port}" == env["RCTC_TRACKER_URL"]
    internal, ops = policies["tracker"]["ingress"]
    assert sorted(peer["podSelector"]["matchLabels"]["app"] for peer in internal["from"]) == ["console", "gateway"]
    assert ([{"port": tracker_port}], [{"port": int(config_maps()["rctc-env"]["RCTC_OPS__PORT"])}]) == (
        internal["ports"],
        ops["ports"],
    )
    assert "from" not in ops
    egress = policies["console"]["egress"]
    assert (["Egress"], [{"port": tracker_port}]) == (policies["console"]["policyTypes"], egress[0]["ports"])
    kafka_port = int(config_maps()["rctc-env"]["RCTC_KAFKA__BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    assert [{"port": kafka_port}] == egress[1]["ports"]
    assert (services_["console"]["type"], services_["console"]["ports"][0]["port"]) == ("ClusterIP", 8090)
    assert [name for name, spec in services_.items() if spec.get("type", "ClusterIP") != "ClusterIP"] == []
