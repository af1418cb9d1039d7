"""A partition's backlog: in order, bounded takes, never two claims in one transaction."""

from __future__ import annotations

from typing import Any

from services.router.backlog import Backlog


def test_takes_are_in_order_and_bounded() -> None:
    b: Backlog[int] = Backlog()
    b.add(1, [1, 2, 3])
    b.add(1, [4, 5])
    b.add(1, [])
    assert len(b) == 5
    assert b.take(4) == (1, [1, 2, 3, 4])
    assert len(b) == 1
    b.add(1, [6])
    assert b.take(10) == (1, [5, 6])
    assert not b


def test_a_take_never_mixes_claims() -> None:
    b: Backlog[int] = Backlog()
    b.add(1, [1, 2])
    b.add(2, [3, 4])
    assert b.take(10) == (1, [1, 2])  # fetched before the partition was claimed again: dropped by the router
    assert b.take(1) == (2, [3])
    assert b.take(1) == (2, [4])
    b.add(3, [5])
    b.clear()
    assert len(b) == 0 and not b


class _Racing:
    """A partition that is empty when asked for its end, and gains a record before the search by time."""

    def __init__(self) -> None:
        self.end = 0

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, self.end)

    async def offsets_for_times(self, query: dict[Any, int]) -> dict[Any, None]:
        self.end += 1  # the correlator writes a record meanwhile; it is newer than the window's start
        return dict.fromkeys(query)


async def test_a_record_written_while_the_window_start_is_sought_is_read() -> None:
    """With no record in the window yet, a follower starts at the end the partition had BEFORE the search: a
    record written in between is read (it once started after it, and a correlation was never told)."""
    from aiokafka import TopicPartition

    from services.common.settings import KafkaSettings
    from services.router.service import build
    from services.router.settings import RouterSettings

    router = build(RouterSettings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")))
    reader = _Racing()
    assert await router._window_start(reader, TopicPartition("alerts.correlated", 0)) == 0  # type: ignore[arg-type]
