"""Typed settings shared by every service.

Each service subclasses `ServiceSettings` in its own `settings.py` and builds it once, in its entry point,
from the environment (`RCTC_` prefix, `__` between nested parts, e.g. `RCTC_KAFKA__BOOTSTRAP_SERVERS`) and
the command line; everything below receives the built object. Nothing in the shared library reads the
environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Section(BaseModel):
    # A misspelt option (RCTC_KAFKA__SECURITY_PROTOCL) stops the service at start with the field's name,
    # instead of being ignored while the service runs on a default nobody chose.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    # Every listener is SASL_SSL, locally too (deploy/kafka/kafka-local.sh); PLAINTEXT exists only for
    # measuring what security costs (make bench) and is never a fallback.
    security_protocol: Literal["SASL_SSL", "SSL", "PLAINTEXT"] = "SASL_SSL"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    # This client's principal. The password comes from the environment or, better, a file mounted for the
    # process (password_file, read once when the settings are built); never from the command line.
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # The certificate authorities to trust (PEM); None: the system's.
    ca_file: Path | None = None
    # A client certificate (PEM) for brokers that ask for one (mutual TLS), with its unencrypted key.
    cert_file: Path | None = None
    key_file: Path | None = None
    # Prefix of client ids and transactional ids, so several systems can share one cluster.
    client_id_prefix: str = "rctc"
    # Production: acks=all with min.insync.replicas=2 on the topics (deploy/README.md).
    # No linger: every hop of an alert paid it (5 ms was a third of the submit-to-topic p50), and records
    # still batch by themselves while a request to the broker is in flight (bench/, docs/performance.md).
    linger_ms: int = 0
    request_timeout_ms: int = 30_000
    # Most bytes a producer puts in one partition's batch. aiokafka sends a node one request at a time,
    # with at most one batch per partition in it, so at its 16 KB default a router transaction's webhook
    # requests (~300 KB a partition for 200 alerts) went out in 19 round trips, one after another: 0.8 s
    # of a 0.9 s transaction (bench/). Below the broker's message.max.bytes (1 MB by default).
    max_batch_bytes: int = 512 * 1024
    # Batch compression (snappy, lz4 and zstd need cramjam installed). None: zstd routed ~7% more at
    # saturation but added ~2 ms to every transactional hop at 20 alerts/s (docs/performance.md).
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    # How long a producer waits before resending a batch the broker refused with a retriable error. The
    # commonest by far is a transactional write right after send_offsets_to_transaction: the broker checks
    # the partition with the transaction coordinator (KIP-890), which is still writing the previous commit's
    # markers, and answers NOT_ENOUGH_REPLICAS to clients as old as aiokafka. At aiokafka's 100 ms that
    # was the p99 of every transactional hop; 10 ms took it to about 40 ms (bench/, docs/performance.md).
    retry_backoff_ms: int = 10
    # How long a transactional producer waits to retry a transaction's first AddPartitionsToTxn that the
    # coordinator refused with CONCURRENT_TRANSACTIONS: the previous transaction's commit has been
    # acknowledged but its markers are still being written, which takes a few milliseconds. aiokafka waits
    # a fixed 20 ms (a module constant, set from here; kafka.py), and a router partition that starts its
    # next transaction at once met that on about 1.5-3% of its transactions at 80-110 alerts/s: the slowest
    # routed alerts. At 2 ms, transactions over 25 ms went from 0.1-0.9% to 0-0.08% (docs/performance.md).
    concurrent_transactions_backoff_ms: float = 2
    session_timeout_ms: int = 10_000
    max_poll_records: int = 500
    # How long the broker may hold a fetch that has nothing to return. Records behind an open transaction
    # are not returned to read_committed readers until it commits, and the broker does not always answer
    # the held fetch at the commit, so this bounds the latency every transactional hop adds (bench/).
    fetch_max_wait_ms: int = 50
    # The client of the hot path's plain producers and group consumers (the enricher's; the gateway's producer;
    # the gateway reads agency topics with librdkafka whatever this says, services/gateway/): librdkafka costs
    # about 0.56 of aiokafka's CPU per request (bench/client_cost.py; services/common/librdkafka.py says what
    # stays the same); aiokafka is kept for what librdkafka is not wired for here (transactions, followers).
    hot_path_client: Literal["librdkafka", "aiokafka"] = "librdkafka"

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if self.password_file is not None:
            # Read once, here at the edge; the file wins over a password given beside it.
            try:
                self.password = SecretStr(self.password_file.read_text().strip())
            except OSError as exc:
                raise ValueError(f"kafka password_file {self.password_file}: {exc.strerror}") from None
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self

    def as_env(self) -> dict[str, str]:
        """These settings as the environment of a child process (`RCTC_KAFKA__*`), for the tools that start
        services: `make run`, the tests, the benchmark. A password read from a file is passed as that file."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        env = {f"RCTC_KAFKA__{name.upper()}": str(value) for name, value in given.items() if value is not None}
        env.pop("RCTC_KAFKA__PASSWORD", None)
        if self.password_file is None and self.password is not None:
            env["RCTC_KAFKA__PASSWORD"] = self.password.get_secret_value()
        return env


class OpsSettings(Section):
    """The /healthz, /readyz and /metrics server every service runs."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests); make run and deployments set one


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable console on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a setting that fails validation is named, never echoed (a token almost right, with
    # a trailing newline from a mounted file, would otherwise go to the log in clear).
    model_config = SettingsConfigDict(
        env_prefix="RCTC_", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    # Bounded graceful shutdown: in-flight work gets this long to finish before it is handed back.
    shutdown_timeout_s: float = 10.0
    # uvloop when it is installed (the `fast` extra, in the image and `make install`): measured in bench/.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
