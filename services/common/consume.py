"""The at-least-once consume loop: fetch a batch, handle it, commit it, and never lose a record.

Offsets are committed only after a batch is fully handled (its output acknowledged by the broker). If
handling raises, nothing is committed: the loop seeks back to the batch's first offsets and tries again
after a growing pause, so a broker outage delays records but drops none. A record that can never succeed
(a poison record) is the handler's to divert (to alerts.rejected, deliveries.dead): that is a signal, not
an error, and the handler returns normally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from services.common.kafka import offsets_after
from services.common.logs import get_logger
from services.common.metrics import BATCH_FAILURES

log = get_logger(__name__)

BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: BatchHandler,
    stopping: asyncio.Event,
    *,
    service: str,
    max_records: int = 200,
    poll_ms: int = 250,
) -> None:
    backoff = 0.1
    while not stopping.is_set():
        batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            continue
        try:
            await handle(records)
            await consumer.commit(offsets_after(records))
            backoff = 0.1
        except CommitFailedError:
            # The group rebalanced while we worked: the partition's new owner fetches these records again.
            log.warning("batch.commit_failed", service=service, records=len(records))
        except (KafkaError, OSError, TimeoutError) as exc:
            await _rewind(consumer, records, service, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
        except Exception as exc:
            # A bug, not an outage: log loudly, keep the records, and retry slowly rather than die.
            log.exception("batch.failed", service=service, records=len(records))
            await _rewind(consumer, records, service, exc)
            await asyncio.sleep(max(backoff, 5.0))


async def _rewind(consumer: AIOKafkaConsumer, records: list[ConsumerRecord], service: str, exc: BaseException) -> None:
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    for tp, offset in first.items():
        BATCH_FAILURES.labels(service, tp.topic).inc()
        if tp in consumer.assignment():
            consumer.seek(tp, offset)
    log.warning("batch.retrying", service=service, records=len(records), error=repr(exc))
