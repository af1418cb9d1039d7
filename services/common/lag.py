"""How far behind each consumer group of this system is, per topic: what `rctc lag` and the operators' console
show.

    rows = await fetch_lag(kafka)                      # every group under the client-id prefix (`rctc-router`, ...)
    rows = lag_rows(committed, ends)                   # the pure part: offsets in, rows out

A group's lag on a partition is the partition's end (its last stable offset: read_committed, as every consumer
here reads, so an open transaction's records are not counted) minus the offset the group committed there. A
group's own offsets are only what it committed: a service that commits every few seconds (the router, every
5 s) shows up to that much lag while it is in fact caught up.

Groups of this system only: those named under the client-id prefix (`kafka.group_id`), which the `operator-cli`
principal may describe (services/common/acls.py: DESCRIBE on groups, never READ, which would let it commit into
a service's group). An agency's groups (`agency-<CODE>.`) are the agency's business. Offsets of a topic the
principal may not describe are not returned by the broker, so such a topic is absent from the rows.

confluent-kafka's AdminClient does the asking (aiokafka's lists neither groups' offsets with the isolation level
nor ends): its calls block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from services.common.kafka_admin import AdminError
from services.common.librdkafka import confluent_config
from services.common.settings import KafkaSettings


@dataclass(frozen=True)
class LagRow:
    """One group on one topic, summed over the partitions it committed offsets on."""

    group: str
    topic: str
    partitions: int
    lag: int
    committed: int
    end: int


def lag_rows(committed: Mapping[tuple[str, str, int], int], ends: Mapping[tuple[str, int], int]) -> list[LagRow]:
    """Rows by (group, topic), sorted, from committed offsets by (group, topic, partition) and ends by (topic,
    partition). A partition without a committed offset (negative: Kafka's "none") or without a known end is left
    out; a lag is never negative (an end read before a commit that passed it)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for (group, topic, partition), offset in committed.items():
        end = ends.get((topic, partition))
        if offset < 0 or end is None:
            continue
        row = sums.setdefault((group, topic), [0, 0, 0, 0])
        row[0] += 1
        row[1] += max(0, end - offset)
        row[2] += offset
        row[3] += end
    return [LagRow(group, topic, *numbers) for (group, topic), numbers in sorted(sums.items())]


async def fetch_lag(
    kafka: KafkaSettings, *, groups: Collection[str] | None = None, timeout_s: float = 15.0
) -> list[LagRow]:
    """The lag of every consumer group of this system (`groups`: only these full group ids, such as
    `rctc-router`) on every topic it committed offsets on. Raises AdminError when the brokers refuse or fail."""
    return await asyncio.to_thread(_fetch, kafka, groups, timeout_s)


def _fetch(kafka: KafkaSettings, groups: Collection[str] | None, timeout_s: float) -> list[LagRow]:
    client = AdminClient(confluent_config(kafka, "lag"))
    prefix = f"{kafka.client_id_prefix}-"
    listed = _result(client.list_consumer_groups(request_timeout=timeout_s), "list consumer groups")
    names = sorted(
        g.group_id for g in listed.valid if g.group_id.startswith(prefix) and (groups is None or g.group_id in groups)
    )
    committed: dict[tuple[str, str, int], int] = {}
    # One group per request: librdkafka refuses more.
    for name in names:
        request = [ConsumerGroupTopicPartitions(name)]
        futures = client.list_consumer_group_offsets(request, request_timeout=timeout_s)
        answer = _result(futures[name], f"list the offsets of group {name}")
        for tp in answer.topic_partitions or ():
            if tp.error is None:
                committed[(name, tp.topic, tp.partition)] = tp.offset
    wanted = {(topic, partition) for _, topic, partition in committed}
    ends: dict[tuple[str, int], int] = {}
    if wanted:
        specs = {TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in sorted(wanted)}
        futures = client.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s)
        for tp, future in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException:
                continue  # a partition whose end cannot be read now: left out (lag_rows)
    return lag_rows(committed, ends)


def _result(future: Any, what: str) -> Any:
    try:
        return future.result()
    except KafkaException as exc:
        raise AdminError(f"{what}: {exc.args[0].str() if exc.args else exc}") from exc
