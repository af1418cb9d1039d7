"""The deployments' Kafka bootstrap on a real secured broker: docker-compose's `init` makes the secrets,
deploy/bootstrap.sh installs them as the admin, and each service then gets in as its own principal.

On a broker of its own: the bootstrap applies ACLs, which are cluster-wide, and removes those it does not want.
The scripts run as compose and the Kubernetes Job run them, with `rctc` and `python` pointing at this checkout
(tests/support/deploy.py); only the broker's address and CA are the local broker's instead of compose's.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.cli.local_broker import LocalBroker
from services.common.acls import SERVICES, AgencyAccess, desired_acls, service_principal
from services.common.kafka_admin import SecurityAdmin
from services.common.librdkafka import confluent_config
from services.common.ops import free_port
from services.common.registry.document import load_registry
from services.common.settings import KafkaSettings
from services.common.topics import load_declarations
from tests.support.deploy import BOOTSTRAP, run_init, shim_env
from tests.support.world import ready_then_stopped, start_service


class Deployment:
    def __init__(self, broker: LocalBroker, volumes: Path, bin_dir: Path) -> None:
        self.broker = broker
        self.volumes = volumes
        self.bin_dir = bin_dir

    def bootstrap(self) -> subprocess.CompletedProcess[str]:
        """deploy/bootstrap.sh with the environment compose's `bootstrap` service gives it."""
        env = shim_env(
            self.bin_dir,
            **self.broker.admin_settings().as_env(),
            RCTC_BOOTSTRAP_SECRETS=str(self.volumes / "secrets"),
            RCTC_BOOTSTRAP_REGISTRY=str(self.volumes / "admin" / "registry.yaml"),
            RCTC_BOOTSTRAP_REPLICATION_FACTOR="1",
        )
        return subprocess.run([str(BOOTSTRAP)], env=env, capture_output=True, text=True, timeout=100, check=False)

    def service_settings(self, name: str) -> KafkaSettings:
        """A service's Kafka settings as its container has them: its principal, its own password file."""
        return KafkaSettings(
            bootstrap_servers=self.broker.bootstrap,
            username=service_principal(name),
            password_file=self.volumes / "secrets" / name / "kafka.password",
            ca_file=self.broker.directory / "tls" / "ca.pem",
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A broker of its own, compose's init run against a temporary directory, and one bootstrap run."""
    broker = LocalBroker.start(tmp_path_factory.mktemp("deploy-kafka"))
    try:
        volumes = tmp_path_factory.mktemp("volumes")
        bin_dir = tmp_path_factory.mktemp("bin")
        made = run_init(volumes, bin_dir)
        assert made.returncode == 0, made.stderr
        deployment = Deployment(broker, volumes, bin_dir)
        done = deployment.bootstrap()
        assert done.returncode == 0, done.stdout + done.stderr
        yield deployment
    finally:
        broker.stop()


def visible_topics(settings: KafkaSettings, timeout_s: float = 20) -> set[str]:
    """The topics this principal's metadata shows (the broker leaves out those it may not describe)."""
    metadata = AdminClient(confluent_config(settings, "deploy-test")).list_topics(timeout=timeout_s)
    return {name for name in metadata.topics if not name.startswith("__")}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_in_as_its_own_principal_and_sees_what_it_may(name: str, deployment: Deployment) -> None:
    """With the password init made and bootstrap installed, the service authenticates, and the broker shows it
    exactly the topics its ACLs name."""
    registry = load_registry(deployment.volumes / "admin" / "registry.yaml")
    agencies = [AgencyAccess(a.code, a.active) for a in registry.agencies]
    wanted = desired_acls(load_declarations(), agencies, client_id_prefix="rctc")
    expected = {a.name for a in wanted if a.principal == service_principal(name) and a.resource == "topic"}
    assert expected == visible_topics(deployment.service_settings(name))


def test_the_bootstrap_leaves_no_acl_drift_and_a_second_run_changes_nothing(deployment: Deployment) -> None:
    """After it, the broker's ACLs are exactly the wanted ones; run again, it succeeds and the passwords hold."""
    again = deployment.bootstrap()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ACLs: 0 created, 0 deleted" in again.stdout
    users = asyncio.run(SecurityAdmin(deployment.broker.admin_settings()).users())
    assert {service_principal(name) for name in SERVICES} <= users
    assert visible_topics(deployment.service_settings("gateway"))


def test_a_rotated_password_works_after_the_bootstrap_and_the_old_one_does_not(deployment: Deployment) -> None:
    """`init --rotate router` then bootstrap: the new file's password gets in, the previous one is refused."""
    old = deployment.service_settings("router")
    rotated = run_init(deployment.volumes, deployment.bin_dir, "--rotate", "router")
    assert rotated.returncode == 0, rotated.stderr
    done = deployment.bootstrap()
    assert done.returncode == 0, done.stdout + done.stderr
    assert visible_topics(deployment.service_settings("router"))
    with pytest.raises(KafkaException):  # no metadata at all: the connection is refused at authentication
        visible_topics(old, timeout_s=5)


async def test_the_auditor_starts_as_its_principal_with_inits_key(deployment: Deployment, tmp_path: Path) -> None:
    """The auditor, as its container runs it (its principal, password file, init's signing key, registered in the
    registry bootstrap applied), becomes ready, and stops cleanly."""
    ops_port = free_port()
    log = tmp_path / "auditor.log"
    key = deployment.volumes / "secrets" / "auditor" / "signing.key"
    settings = deployment.service_settings("auditor")
    process = await start_service(
        "auditor", settings, log_to=log, RCTC_SIGNING_KEY_FILE=str(key), RCTC_OPS__PORT=str(ops_port)
    )
    await ready_then_stopped(process, ops_port, log)
