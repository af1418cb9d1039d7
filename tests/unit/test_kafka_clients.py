"""How the shared Kafka clients are set up, where aiokafka offers no option for what we need."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from pydantic import ValidationError

from services.common.errors import ConfigurationError
from services.common.kafka import connection, producer, replay_from_beginning
from services.common.settings import KafkaSettings, ServiceSettings


async def test_a_transaction_refused_while_the_last_commit_completes_is_retried_after_our_backoff() -> None:
    """aiokafka's own 20 ms wait was the slowest routed alerts' (settings.py): ours reaches its retry path."""
    # Never connects: no principal is needed for what this looks at.
    settings = KafkaSettings(concurrent_transactions_backoff_ms=3, security_protocol="PLAINTEXT")
    p = producer(settings, "test", transactional_id="router-alerts.enriched-0")
    try:
        handler = AddPartitionsToTxnHandler(p._sender, [TopicPartition("agency.JO-GID", 0)])
        # The coordinator's answer to the first AddPartitionsToTxn of a transaction started right after a commit.
        refused = SimpleNamespace(errors=[("agency.JO-GID", [(0, ConcurrentTransactions.errno)])])
        assert handler.handle_response(refused) == 0.003
        # Any other retriable refusal still waits the producer's ordinary backoff.
        assert p._sender._retry_backoff == settings.retry_backoff_ms / 1000
    finally:
        await p.stop()


def test_a_sasl_client_without_a_principal_is_refused_before_it_connects() -> None:
    """SASL_SSL is the default, and a client without a username and password is a configuration error."""
    with pytest.raises(ConfigurationError, match="RCTC_KAFKA__USERNAME"):
        connection(KafkaSettings())


def test_the_password_comes_from_its_file_and_travels_to_children_as_that_file(tmp_path: Path) -> None:
    """A password file is read once when the settings are built; child processes get the file, not the secret."""
    secret = tmp_path / "svc.password"
    secret.write_text("s3cret-from-file\n")
    settings = KafkaSettings(username="service-router", password_file=secret)
    options = connection(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("service-router", "s3cret-from-file")
    env = settings.as_env()
    assert env["RCTC_KAFKA__PASSWORD_FILE"] == str(secret)
    assert "s3cret-from-file" not in "".join(env.values())


def test_a_misspelt_kafka_variable_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """RCTC_KAFKA__SECURITY_PROTOCL is an error naming the field, not a silently ignored plaintext default."""
    monkeypatch.setenv("RCTC_KAFKA__SECURITY_PROTOCL", "SASL_SSL")
    with pytest.raises(ValidationError, match="security_protocl"):
        ServiceSettings()


class _ReplayConsumer:
    """Stands in for aiokafka's consumer in a replay: each poll reads one record of every unpaused partition."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends
        self.positions = dict.fromkeys(ends, 0)
        self.paused: set[TopicPartition] = set()
        self.read: list[str] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert set(partitions) == set(self.ends)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    async def poll(self, _timeout_ms: int) -> None:
        for tp in self.ends:
            if tp not in self.paused and self.positions[tp] < self.ends[tp]:
                self.positions[tp] += 1
                self.read.append(tp.topic)


async def test_a_replay_reads_the_first_topics_to_their_end_before_any_other() -> None:
    """The tracker's decisions are all read before the acks that refer to them (whose early buffer is bounded)."""
    ends = {TopicPartition("alerts.routed", 0): 5, TopicPartition("acks.submitted", 0): 7}
    fake = _ReplayConsumer(ends)
    await replay_from_beginning(fake, list(ends), fake.poll, first=["alerts.routed"])  # type: ignore[arg-type]
    assert fake.read == ["alerts.routed"] * 5 + ["acks.submitted"] * 7
    assert fake.paused == set()


def test_a_setting_that_fails_validation_is_named_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An internal token almost right (a space, a newline from a mounted file) is refused by name, and the value
    itself never reaches the error, so never the log (review finding)."""
    from services.gateway.settings import GatewaySettings

    monkeypatch.setenv("RCTC_INTERNAL_TOKEN", "my secret token with spaces 1234567890")
    with pytest.raises(ValidationError) as refused:
        GatewaySettings()
    assert "internal_token" in str(refused.value)
    assert "my secret token" not in str(refused.value)
