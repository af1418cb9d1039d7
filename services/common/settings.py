"""Typed settings shared by every service.

Each service subclasses `ServiceSettings` in its own `settings.py` and builds it once, in its entry point,
from the environment (`RCTC_` prefix, `__` between nested parts, e.g. `RCTC_KAFKA__BOOTSTRAP_SERVERS`) and
the command line; everything below receives the built object. Nothing in the shared library reads the
environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
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


class OpsSettings(BaseModel):
    """The /healthz, /readyz and /metrics server every service runs."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests); make run and deployments set one


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable console on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RCTC_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    # Bounded graceful shutdown: in-flight work gets this long to finish before it is handed back.
    shutdown_timeout_s: float = 10.0
    # uvloop when it is installed (the `fast` extra, in the image and `make install`): measured in bench/.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    schema_dir: Path | None = None
