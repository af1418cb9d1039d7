"""How the shared Kafka clients are set up, where aiokafka offers no option for what we need."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler

from services.common.kafka import producer, replay_from_beginning
from services.common.settings import KafkaSettings


async def test_a_transaction_refused_while_the_last_commit_completes_is_retried_after_our_backoff() -> None:
    """aiokafka's own 20 ms wait was the slowest routed alerts' (settings.py): ours reaches its retry path."""
    settings = KafkaSettings(concurrent_transactions_backoff_ms=3)
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
