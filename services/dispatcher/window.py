"""Committing offsets when deliveries finish out of order. Pure: no I/O.

Deliveries of one partition run concurrently and finish in any order (a slow endpoint's request can take
seconds while a healthy one's takes milliseconds), so a consumer cannot commit "the batch". It commits,
per partition, one past the longest prefix of finished offsets: nothing unfinished is ever committed, and
nothing finished waits for a batch boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class _Partition:
    outstanding: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset started


class CommitWindow:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        p = self._partitions.setdefault(tp, _Partition())
        p.outstanding.add(offset)
        p.next_offset = max(p.next_offset, offset + 1)

    def skipped(self, tp: TopicPartition, offset: int) -> None:
        """An offset handled without work (an unreadable record): committable like a finished one."""
        p = self._partitions.setdefault(tp, _Partition())
        p.next_offset = max(p.next_offset, offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        p = self._partitions.get(tp)
        if p is not None:  # the partition may have been revoked meanwhile
            p.outstanding.discard(offset)

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset to commit: the lowest unfinished one, or one past everything started."""
        return {
            tp: (min(p.outstanding) if p.outstanding else p.next_offset)
            for tp, p in self._partitions.items()
            if p.next_offset >= 0
        }

    def in_flight(self) -> int:
        return sum(len(p.outstanding) for p in self._partitions.values())

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)
