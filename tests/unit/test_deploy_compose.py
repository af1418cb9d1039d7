"""docker-compose.yml secures Kafka as `make run` does, read without a container engine.

What each container would get is worked out from the file itself: compose's `init` script is run here into a
temporary directory (one subdirectory per volume), and each service's real settings class is built from the
environment and the files its container would see. The image (Dockerfile) is checked for what compose and
Kubernetes run from it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import compose_spec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.auditor.checkpoints import key_id, public_bytes
from services.auditor.settings import AuditorSettings
from services.cli.settings import CliSettings
from services.common.acls import SERVICES, service_principal
from services.common.registry.document import load_registry
from tests.support.deploy import (
    BOOTSTRAP,
    INIT,
    INIT_ROOT,
    ROOT,
    SECRET_NAME,
    SETTINGS,
    build,
    code_lines,
    compose,
    k8s_documents,
    properties,
    run_init,
    strings,
    unknown_settings,
)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/compose/init.sh run once: the compose volumes' contents, one directory each under the result."""
    root = tmp_path_factory.mktemp("compose-volumes")
    done = run_init(root, tmp_path_factory.mktemp("bin"))
    assert done.returncode == 0, done.stderr
    return root


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def volume_dir(volumes: Path, volume: str) -> Path:
    """Where init wrote the volume named `volume` (it mounts every one of them under /var/lib/rctc)."""
    for spec in compose_services()["init"]["volumes"]:
        name, target = spec.split(":")[:2]
        if name == volume:
            return volumes / Path(target).relative_to(INIT_ROOT)
    raise AssertionError(f"init does not mount the volume {volume}, so nothing fills it")


def host_path(volumes: Path, service: str, container_path: str) -> Path:
    """The file that `container_path` is inside the container of `service`, as init wrote it."""
    for spec in compose_services()[service].get("volumes", []):
        name, target = spec.split(":")[:2]
        if container_path == target or container_path.startswith(target + "/"):
            return volume_dir(volumes, name) / Path(container_path).relative_to(target)
    raise AssertionError(f"{service} mounts nothing at {container_path}")


def container_env(volumes: Path, service: str) -> dict[str, str]:
    """A compose service's environment with its file paths made local, plus the variables its shell command
    exports from mounted files."""
    body = compose_services()[service]
    env = {k: str(v) for k, v in body.get("environment", {}).items()}
    command = " ".join(body.get("command", []))
    for name, path in re.findall(r'export (\w+)="\$\$\(cat ([^)]+)\)"', command):
        env[name] = host_path(volumes, service, path).read_text().rstrip("\n")
    for name, value in env.items():
        for spec in body.get("volumes", []):
            target = spec.split(":")[1]
            if value == target or value.startswith(target + "/"):
                env[name] = str(host_path(volumes, service, value))
    return env


def test_the_compose_file_follows_the_compose_specification() -> None:
    """A spec-compliant parser (the Rust compose_spec crate, through the compose-spec package) accepts the file,
    its anchors resolved as Compose resolves them (the parser reads no YAML merge keys), and every named volume a
    service mounts is declared. No container engine runs here: this is what stands in for `docker compose config`."""
    parsed = compose_spec.PyCompose.from_json(json.dumps(compose()))
    parsed.validate()
    declared = set(compose()["volumes"])
    mounted = {spec.split(":")[0] for body in compose_services().values() for spec in body.get("volumes", [])}
    assert mounted == declared


def test_the_compose_broker_is_secured_as_the_local_one(volumes: Path) -> None:
    """One SASL_SSL listener for clients, the controller's on loopback, StandardAuthorizer, admin alone super."""
    props = properties(volumes / "kafka" / "server.properties")
    template = properties(ROOT / "deploy" / "kafka" / "server.properties.template")
    expected = {
        "listeners": "CLIENT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093",
        "advertised.listeners": "CLIENT://kafka:9092",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SASL_SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": "User:admin",
        "ssl.client.auth": "none",
    }
    assert expected == {key: props[key] for key in expected}
    # Everything else is the local broker's template, rendered.
    assert set(template) == set(props)


def test_only_the_gateway_and_the_console_are_published_and_the_broker_is_not(volumes: Path) -> None:
    """No broker port leaves the compose network; the gateway's and the console's are published on the host's
    loopback only, each at the port its service listens on."""
    published = {name: body.get("ports", []) for name, body in compose_services().items() if body.get("ports")}
    assert published == {"gateway": ["127.0.0.1:8080:8080"], "console": ["127.0.0.1:8090:8090"]}
    for name, (spec,) in published.items():
        assert spec.rsplit(":", 1)[1] == compose_services()[name]["environment"]["RCTC_HTTP__PORT"]


def test_nothing_in_the_deploy_files_is_plaintext(volumes: Path) -> None:
    """No PLAINTEXT protocol in compose, k8s or the broker's rendered configuration, and no --skip-acls."""
    texts = {
        "compose": list(strings(compose())),
        "k8s": list(strings(k8s_documents())),
        "server.properties": code_lines(volumes / "kafka" / "server.properties"),
        "bootstrap.sh": code_lines(BOOTSTRAP),
        "init.sh": code_lines(INIT),
    }
    found = [(name, t) for name, text in texts.items() for t in text if "PLAINTEXT" in t.upper() or "--skip-acls" in t]
    assert found == []


def test_the_broker_finds_every_file_it_is_configured_with(volumes: Path) -> None:
    """The broker's command, its properties' key and trust store, and its healthcheck's client file exist in its
    volume; the keystore is PKCS#8 followed by a certificate that the CA signed for the names clients use."""
    kafka = compose_services()["kafka"]
    props = properties(volumes / "kafka" / "server.properties")
    paths = [kafka["command"][-1], props["ssl.keystore.location"], props["ssl.truststore.location"]]
    health = properties(
        host_path(volumes, "kafka", kafka["healthcheck"]["test"][1].split("--command-config ")[1].split()[0])
    )
    paths.append(health["ssl.truststore.location"])
    assert [p for p in paths if not host_path(volumes, "kafka", p).is_file()] == []
    keystore = host_path(volumes, "kafka", props["ssl.keystore.location"]).read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate(keystore[keystore.index("-----BEGIN CERTIFICATE-----") :].encode())
    ca = x509.load_pem_x509_certificate(host_path(volumes, "kafka", props["ssl.truststore.location"]).read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"kafka", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    # The healthcheck and the broker's own listeners authenticate as the admin, with the formatted password.
    password = (volumes / "kafka" / "admin.password").read_text().strip()
    assert f'username="admin" password="{password}";' in health["sasl.jaas.config"]
    assert health["sasl.jaas.config"] == props["listener.name.client.scram-sha-512.sasl.jaas.config"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_compose_service_builds_its_settings_as_its_own_principal(
    name: str, volumes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's real settings class accepts its container's environment and files: SASL_SSL, its own
    principal, its own password file, the broker's CA; nothing in its environment goes unread."""
    body = compose_services()[name]
    assert ["python", "-m", f"services.{name}"] == body["command"][-3:] or body["command"][-1].endswith(
        f"exec python -m services.{name}"
    )
    assert [f"secrets-{name}:/run/secrets/rctc:ro"] == body["volumes"]
    env = container_env(volumes, name)
    assert unknown_settings(SETTINGS[name], env) == []
    settings = build(SETTINGS[name], env, monkeypatch)
    kafka = settings.kafka
    expected = ("SASL_SSL", "SCRAM-SHA-512", service_principal(name), "kafka:9092")
    assert expected == (kafka.security_protocol, kafka.sasl_mechanism, kafka.username, kafka.bootstrap_servers)
    assert kafka.password.get_secret_value() == (volumes / "secrets" / name / "kafka.password").read_text().strip()
    assert kafka.ca_file.read_bytes() == (volumes / "kafka" / "tls" / "ca.pem").read_bytes()


def test_the_auditor_signs_with_the_key_the_registry_lists(volumes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The auditor's key (mounted for it alone) is the one whose public half the bootstrap's registry carries."""
    auditor = build(AuditorSettings, container_env(volumes, "auditor"), monkeypatch)
    registry = load_registry(
        host_path(volumes, "bootstrap", compose_services()["bootstrap"]["environment"]["RCTC_BOOTSTRAP_REGISTRY"])
    )
    assert [key_id(public_bytes(auditor.signing_key))] == [k.id for k in registry.audit.public_keys]
    mounting = [
        n for n, b in compose_services().items() if any(v.startswith("secrets-auditor:") for v in b.get("volumes", []))
    ]
    assert mounting == ["init", "bootstrap", "auditor"]


def test_the_gateway_the_console_and_the_tracker_share_one_internal_token(
    volumes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The three read the same random credential from their own volumes, through the environment only, and the
    two callers find the tracker at its compose name and port."""
    tokens = {
        name: build(SETTINGS[name], container_env(volumes, name), monkeypatch).internal_token.get_secret_value()
        for name in ("gateway", "console", "tracker")
    }
    assert len(set(tokens.values())) == 1
    assert [n for n in tokens if "RCTC_INTERNAL_TOKEN" in compose_services()[n]["environment"]] == []
    tracker = f"http://tracker:{compose_services()['tracker']['environment']['RCTC_HTTP__PORT']}"
    callers = [compose_services()[n]["environment"]["RCTC_TRACKER_URL"] for n in ("gateway", "console")]
    assert [tracker, tracker] == callers


def test_init_writes_a_missing_internal_token_as_the_one_the_others_share(volumes: Path, tmp_path: Path) -> None:
    """A volume set made before the console existed: init gives the console the token the gateway and the tracker
    already hold, rather than a new one that would part them until both restart."""
    token = volumes / "secrets" / "console" / "internal-token"
    shared = (volumes / "secrets" / "gateway" / "internal-token").read_text()
    token.unlink()
    done = run_init(volumes, tmp_path / "bin")
    assert done.returncode == 0, done.stderr
    assert [shared, shared] == [token.read_text(), (volumes / "secrets" / "tracker" / "internal-token").read_text()]


def test_init_rotates_the_internal_token_of_all_three_at_once(volumes: Path, tmp_path: Path) -> None:
    """--rotate internal-token gives the gateway, the tracker and the console one new value, the same."""
    paths = [volumes / "secrets" / name / "internal-token" for name in ("gateway", "tracker", "console")]
    before = paths[0].read_text()
    done = run_init(volumes, tmp_path / "bin", "--rotate", "internal-token")
    assert done.returncode == 0, done.stderr
    after = {path.read_text() for path in paths}
    assert len(after) == 1 and before not in after


def test_the_compose_bootstrap_installs_the_passwords_the_services_read(
    volumes: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The bootstrap connects as the admin with the broker's admin password and finds, for every service, the
    very file that service reads; it runs deploy/bootstrap.sh, which applies the registry with its ACLs."""
    monkeypatch.chdir(tmp_path)  # CliSettings would read a .run/rctc.env under the working directory
    bootstrap = compose_services()["bootstrap"]
    env = container_env(volumes, "bootstrap")
    script_env = {k: env.pop(k) for k in list(env) if k.startswith("RCTC_BOOTSTRAP_")}
    assert unknown_settings(CliSettings, env) == []
    kafka = build(CliSettings, env, monkeypatch).kafka
    expected = ("SASL_SSL", "admin", (volumes / "kafka" / "admin.password").read_text().strip())
    assert expected == (kafka.security_protocol, kafka.username, kafka.password.get_secret_value())
    assert bootstrap["command"] == ["/app/deploy/bootstrap.sh"]
    for name in SERVICES:
        installed = host_path(
            volumes, "bootstrap", f"{bootstrap['environment']['RCTC_BOOTSTRAP_SECRETS']}/{name}/kafka.password"
        )
        assert installed.read_text() == (volumes / "secrets" / name / "kafka.password").read_text()
    assert Path(script_env["RCTC_BOOTSTRAP_REGISTRY"]).is_file()
    assert "rctc registry apply" in BOOTSTRAP.read_text() and "--existing" in BOOTSTRAP.read_text()


def test_compose_writes_no_secret_value(volumes: Path) -> None:
    """Every secret-named variable in compose is a file path; the demo's HTTP-only processes get no Kafka at all."""
    literal = [
        f"{service}.{name}"
        for service, body in compose_services().items()
        for name, value in body.get("environment", {}).items()
        if SECRET_NAME.search(name) and not str(value).startswith("/")
    ]
    assert literal == []
    assert [
        n
        for n in ("receivers", "feed")
        if "volumes" in compose_services()[n]
        or any(k.startswith("RCTC_KAFKA") for k in compose_services()[n].get("environment", {}))
    ] == []


def test_init_keeps_what_it_made_and_rotates_only_what_it_is_asked(volumes: Path, tmp_path: Path) -> None:
    """A second run changes nothing but the rotated password; the CA and the other passwords stay."""
    before = {p.relative_to(volumes): p.read_bytes() for p in volumes.rglob("*") if p.is_file()}
    done = run_init(volumes, tmp_path / "bin", "--rotate", "router")
    assert done.returncode == 0, done.stderr
    after = {p.relative_to(volumes): p.read_bytes() for p in volumes.rglob("*") if p.is_file()}
    assert [Path("secrets/router/kafka.password")] == [p for p in before if before[p] != after[p]]


def test_init_refuses_to_rotate_what_it_does_not_know(volumes: Path, tmp_path: Path) -> None:
    """A misspelt name is an error, not a run that rotates nothing."""
    done = run_init(volumes, tmp_path / "bin", "--rotate", "gatewy")
    assert (done.returncode, done.stderr) == (2, "init: --rotate gatewy: not a service nor internal-token\n")


def test_the_compose_broker_is_the_pinned_kafka() -> None:
    """The apache/kafka image runs the Kafka version the local broker's pom.xml pins."""
    pinned = re.search(r"<kafka.version>(.*)</kafka.version>", (ROOT / "deploy" / "kafka" / "pom.xml").read_text())
    assert pinned is not None
    assert f"apache/kafka:{pinned.group(1)}" == compose_services()["kafka"]["image"]


# --- the image -------------------------------------------------------------------------------------------------


def test_the_image_holds_what_compose_and_k8s_run() -> None:
    """The Dockerfile installs openssl (init's certificates and secrets) and copies every script and file the
    commands above run into /app; the code itself is the installed wheel's (tests/unit/test_dockerfile.py)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [src for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE) for src in line.split()[:-1]]
    needed = [
        "deploy/bootstrap.sh",
        "deploy/compose/init.sh",
        "deploy/compose/kafka-start.sh",
        "deploy/kafka/make-pki.sh",
        "deploy/kafka/server.properties.template",
        "deploy/registry/demo.yaml",
    ]
    assert [n for n in needed if not any(n == c or n.startswith(c.rstrip("/") + "/") for c in copied)] == []
    assert "install -y --no-install-recommends openssl" in dockerfile
    assert re.findall(r"^WORKDIR (.+)$", dockerfile, re.MULTILINE)[-1] == "/app"
    # Every script compose and k8s run from the image is in the repository, executable, and copied into /app.
    run = {t for doc in [compose(), *k8s_documents()] for t in strings(doc) if t.startswith("/app/")}
    assert run == {"/app/deploy/bootstrap.sh", "/app/deploy/compose/init.sh"}
    for path in sorted(run):
        relative = path.removeprefix("/app/")
        assert (ROOT / relative).stat().st_mode & 0o111, path
        assert any(relative == c or relative.startswith(c.rstrip("/") + "/") for c in copied), path
    assert subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=False).returncode == 0


def test_init_hands_each_volume_to_the_user_that_mounts_it() -> None:
    """init.sh chowns the broker's files to the uid compose runs the broker as, the rest to the image's user."""
    init = INIT.read_text()
    image_uid = re.findall(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[-1]
    assert compose_services()["kafka"]["user"] == "1000:1000"
    assert 'chown -R 1000:1000 "$broker"' in init
    assert f'chown -R {image_uid} "$admin" "$secrets"' in init
    assert "user" not in compose_services()["bootstrap"]  # the image's own user, who owns admin/ and secrets/


def test_only_the_demo_processes_are_behind_the_demo_profile() -> None:
    """`docker compose up` runs a center's system; `--profile demo` adds the demo receivers and feed, which post
    alerts with the demo registry's tokens and must never run beside a real registry by default."""
    profiled = {name: body.get("profiles") for name, body in compose_services().items() if body.get("profiles")}
    assert profiled == {"receivers": ["demo"], "feed": ["demo"]}
