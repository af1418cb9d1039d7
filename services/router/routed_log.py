"""Which alerts an input partition has already routed, read back from the router's own output.

Kafka transactions make each routing of a record atomic, but the same alert can reach the router twice:
a client retries with the same Idempotency-Key (same alert id, by design), or the at-least-once enricher
re-sends after a rebalance. Routing it again would put a second copy in every agency topic. So the router
writes each decision to `alerts.routed` in the *same partition number* as the input record, inside the
routing transaction, and when it claims an input partition it reads that partition of `alerts.routed`
(committed records only, over the de-duplication window) to learn what was routed already. The log is
the state: nothing else has to survive a crash, and a new owner of the partition sees exactly what its
predecessor committed.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.topics import ALERTS_ROUTED


class RoutedLog:
    # Reading a week of one partition's keys takes well under this; past it the broker is in trouble, and
    # the claim fails (and is retried) rather than route without knowing what was routed.
    LOAD_TIMEOUT_S = 60.0

    def __init__(self, reader: AIOKafkaConsumer, window_s: float) -> None:
        self._reader = reader  # a group-less, read_committed consumer used only here
        self._window_ms = int(window_s * 1000)
        self._seen: dict[int, set[str]] = {}

    async def load(self, partition: int) -> int:
        """Read what `partition` routed within the window; returns how many alert ids were found."""
        tp = TopicPartition(ALERTS_ROUTED, partition)
        self._reader.assign([tp])
        since = int(time.time() * 1000) - self._window_ms
        found = await self._reader.offsets_for_times({tp: since})
        end = (await self._reader.end_offsets([tp]))[tp]
        start = found[tp].offset if found.get(tp) is not None else end
        self._reader.seek(tp, start)
        seen: set[str] = set()
        async with asyncio.timeout(self.LOAD_TIMEOUT_S):
            while await self._reader.position(tp) < end:
                for records in (await self._reader.getmany(tp, timeout_ms=1000)).values():
                    seen.update(r.key.decode() for r in records if r.key is not None)
        self._seen[partition] = seen
        return len(seen)

    def forget(self, partition: int) -> None:
        self._seen.pop(partition, None)

    def routed(self, partition: int, alert_id: str) -> bool:
        return alert_id in self._seen.get(partition, ())

    def add(self, partition: int, alert_ids: list[str]) -> None:
        """Record ids whose routing transaction committed."""
        self._seen.setdefault(partition, set()).update(alert_ids)
