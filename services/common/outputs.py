"""Records handed to a producer as one ready batch per partition, and a writer that gathers them.

Routing an alert to ten agencies writes 21 records. Through `producer.send`, each costs aiokafka a
partitioner call, a metadata check, a future and an append: as much CPU as the routing itself. The
router knows every record of a transaction before it begins, so it groups them by partition and submits
each group as a ready batch (aiokafka's `create_batch`/`send_batch`), with the partition Kafka's own rule
gives the key (services/common/partitioner.py), exactly where `send` would have put it.

`GroupWriter` does the same for records that many tasks produce one at a time (the dispatcher's outcome
of each delivery): what arrives while a write is in flight goes out together in the next one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common.partitioner import partition_for

Headers = list[tuple[str, bytes]]


@dataclass
class Outputs:
    """Records collected while routing a batch, written inside the transaction by `write`."""

    _records: list[tuple[str, int | bytes | None, bytes, bytes, Headers]] = field(default_factory=list)

    def add(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes,
        headers: Headers,
        partition: int | None = None,
        partition_by: bytes | None = None,
    ) -> None:
        """A record for `topic`, in `partition` if given, else where Kafka's rule puts `partition_by` (or the key)."""
        self._records.append((topic, partition if partition is not None else partition_by, key, value, headers))

    def __len__(self) -> int:
        return len(self._records)

    async def write(self, p: AIOKafkaProducer) -> None:
        """Submit every record in order, one batch per partition, and wait until the broker has them all."""
        partitions: dict[str, list[int]] = {}
        grouped: dict[tuple[str, int], list[tuple[bytes, bytes, Headers]]] = {}
        for topic, where, key, value, headers in self._records:
            if isinstance(where, int):
                partition = where
            else:
                if topic not in partitions:
                    partitions[topic] = sorted(await p.partitions_for(topic))
                partition = partition_for(where or key, partitions[topic])
            grouped.setdefault((topic, partition), []).append((key, value, headers))
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), records in grouped.items():
            batch = p.create_batch()
            for key, value, headers in records:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    # Full (the producer's batch size): send it and go on in a new one.
                    futures.append(await _submit(p, batch, topic, partition))
                    batch = p.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)  # an empty batch takes any
            futures.append(await _submit(p, batch, topic, partition))
        for future in futures:
            await future


async def _submit(p: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    batch.close()  # nothing else may be added to it by a concurrent producer.send
    future: asyncio.Future[Any] = await p.send_batch(batch, topic, partition=partition)
    return future


class GroupWriter:
    """Writes records from many concurrent tasks, a batch at a time: each `submit` returns a future that
    is done when the record is acknowledged (or failed with the write's error). No linger: a record that
    finds no write in flight goes out at once; those that arrive during a write go out together next."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._waiting: list[tuple[str, bytes, bytes, Headers, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    def submit(self, topic: str, key: bytes, value: bytes, headers: Headers) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((topic, key, value, headers, done))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_all())
        return done

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            outputs = Outputs()
            for topic, key, value, headers, _ in batch:
                outputs.add(topic, value, key=key, headers=headers)
            try:
                await outputs.write(self._producer)
            except Exception as exc:  # every waiter gets the write's own error, to handle as send's
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        """Wait for what was submitted to be written (or failed)."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
