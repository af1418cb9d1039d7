"""The local Apache Kafka broker of `make run`, the test suite and the benchmark, and how to reach it.

`deploy/kafka/kafka-local.sh` starts it secured (SASL_SSL with SCRAM-SHA-512, TLS from a CA it makes, the
StandardAuthorizer, one bootstrap admin as the only super user) and keeps its CA certificate and the
admin's password under the data directory. This module starts and stops it and gives the settings a client
needs to connect as that admin:

    broker = LocalBroker.start(Path(".run/kafka"))
    settings = broker.admin_settings(client_id_prefix="t1")   # KafkaSettings for in-process clients
    env = broker.admin_settings().as_env()                    # RCTC_KAFKA__* for a child process
    broker.stop()

`settings` (extra broker settings) is for the broker-under-load reproduction, and `plaintext` ONLY for the
benchmark's baseline of what security costs (bench/harness.py): nothing else may start a plaintext broker.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.settings import KafkaSettings

# A checkout's root: the broker script is a developer's tool, not package data, so an installed wheel (where
# this is site-packages' parent) has none and `start` says so (NOT_A_CHECKOUT).
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka" / "kafka-local.sh"
NOT_A_CHECKOUT = (
    f"the local Kafka broker is started by deploy/kafka/kafka-local.sh of a checkout of the repository, and there is "
    f"none at {ROOT}: this is an installed package. Run it from a checkout (`make install`, then `make run`)."
)
ADMIN = "admin"


class BrokerStartError(RuntimeError):
    """The local broker did not start; the message holds the script's own explanation."""


@dataclass(frozen=True)
class LocalBroker:
    directory: Path
    bootstrap: str
    plaintext: bool = False

    @classmethod
    def start(
        cls,
        directory: Path,
        port: int = 0,
        *,
        timeout_s: float = 180,
        settings: dict[str, str] | None = None,
        plaintext: bool = False,
        reauth_ms: int | None = None,
    ) -> LocalBroker:
        """Start (formatting and making its certificates and admin password on the first start) and wait
        until it serves. `port` 0 takes a free one; a directory started before keeps its port and its kind.
        `settings` are broker settings added when the directory is first made; `plaintext` is the
        benchmark's alone (the module's docstring). `reauth_ms`: how long a SASL session lasts before it must
        re-authenticate (the script's default, 10 minutes, if None; fixed when the directory is made)."""
        if not SCRIPT.is_file():
            raise BrokerStartError(NOT_A_CHECKOUT)
        if reauth_ms is not None:
            settings = {**(settings or {}), "connections.max.reauth.ms": str(reauth_ms)}
        command = [str(SCRIPT), "start", "--dir", str(directory), "--port", str(port)]
        for key, value in (settings or {}).items():
            command += ["--set", f"{key}={value}"]
        if plaintext:
            command.append("--plaintext")
        started = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if started.returncode != 0:
            raise BrokerStartError(f"the local Kafka broker did not start:\n{started.stderr}")
        return cls(directory.resolve(), started.stdout.strip().splitlines()[-1], plaintext)

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", "--dir", str(self.directory)], timeout=60, check=False)

    def admin_settings(self, **fields: Any) -> KafkaSettings:
        """Settings for a client of this broker that authenticates as its bootstrap admin (on a plaintext
        broker, anyone: there is no authentication to pass)."""
        if self.plaintext:
            return KafkaSettings(bootstrap_servers=self.bootstrap, security_protocol="PLAINTEXT", **fields)
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_SSL",
            username=ADMIN,
            password_file=self.directory / "admin.password",
            ca_file=self.directory / "tls" / "ca.pem",
            **fields,
        )
