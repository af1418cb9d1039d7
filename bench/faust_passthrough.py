"""The raw pass-through again, as a faust-streaming agent: does Faust belong on the path an alert takes?

docs/architecture.md (Services) keeps plain aiokafka on that path and Faust beside it; the issue asks for the
measurement. The agent does what the raw aiokafka baseline does (each record of bench.in out again as the router's 21
records; here 20 to bench.out and the 21st to bench.faust.done, by which the harness times it), in Faust's
at-least-once mode with the services' producer settings where Faust has them (acks all, no linger, 512 KB
batches). It runs as its own worker process (`python -m bench.faust_passthrough APP_ID`, with the Kafka
settings in `RCTC_KAFKA__*` as the services have them), as a Faust service would, and the harness reads
bench.faust.done.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.workload import OUTPUTS_PER_ALERT
from services.common.kafka import connection
from services.common.settings import KafkaSettings

DONE_TOPIC = "bench.faust.done"


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RCTC_", env_nested_delimiter="__", extra="ignore")
    kafka: KafkaSettings = KafkaSettings()


def app(kafka: KafkaSettings, app_id: str, datadir: str) -> Any:
    import faust

    credentials = None
    if kafka.security_protocol == "SASL_SSL":
        assert kafka.username and kafka.password is not None
        credentials = faust.SASLCredentials(
            username=kafka.username,
            password=kafka.password.get_secret_value(),
            ssl_context=connection(kafka)["ssl_context"],
            mechanism=kafka.sasl_mechanism,  # faust's default is PLAIN
        )
    a = faust.App(
        app_id,
        datadir=datadir,  # Faust keeps a directory per app (its tables' stores); none is wanted in the repo
        broker=f"kafka://{kafka.bootstrap_servers}",
        broker_credentials=credentials,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=0,
        producer_max_batch_size=512 * 1024,
        topic_allow_declare=False,  # the harness created every topic, as `rctc topics apply` does
        topic_disable_leader=True,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    source = a.topic("bench.in", key_serializer="raw", value_serializer="raw")
    out = a.topic("bench.out", key_serializer="raw", value_serializer="raw")
    done = a.topic(DONE_TOPIC, key_serializer="raw", value_serializer="raw")

    @a.agent(source)
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            for _ in range(OUTPUTS_PER_ALERT - 1):
                await out.send(key=event.key, value=event.value)
            await done.send(key=event.key, value=event.value)

    return a


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="rctc-bench-faust-") as datadir:
        worker = app(_Settings().kafka, sys.argv[1], datadir)
        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
        worker.main()
