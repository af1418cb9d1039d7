"""How the shared Kafka clients are set up, where aiokafka offers no option for what we need."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler

from services.common.kafka import producer
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
