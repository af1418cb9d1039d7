"""The consume loop's policy: outages are retried with a rewind, bugs stop the loop loudly, nothing past
unfinished work is committed; `fail_fast` gives tasks outside the loop the same policy."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from services.common.consume import consume_batches, crash_of, fail_fast, is_retryable, raise_if_crashed

TP = TopicPartition("alerts.submitted", 0)


def record(offset: int, value: bytes = b"v") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, None, value, None, 0, len(value), [])


class FakeConsumer:
    """Hands out the same fetched batch until it is committed past, like a consumer after a seek."""

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records = records
        self.position = 0
        self.committed: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        batch = [r for r in self.records if r.offset >= self.position][:max_records]
        if batch:
            self.position = batch[-1].offset + 1
        return {TP: batch} if batch else {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position = offset


async def test_a_bug_in_the_handler_stops_the_loop_with_it_and_commits_nothing() -> None:
    """An unexpected exception is logged as loop.crashed with its traceback and re-raised; no offset moves."""
    consumer = FakeConsumer([record(0), record(1)])

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise ValueError("a bug")

    with structlog.testing.capture_logs() as logs, pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(
            consume_batches(cast(AIOKafkaConsumer, consumer), handle, asyncio.Event(), service="test"), 5
        )
    assert consumer.committed == []
    crashed = [e for e in logs if e["event"] == "loop.crashed"]
    assert len(crashed) == 1
    assert (
        crashed[0]["log_level"],
        crashed[0]["exc_info"],
        crashed[0]["first"],
    ) == ("error", True, {"alerts.submitted/0": 0})


async def test_an_outage_is_retried_from_the_batch_start_and_then_committed() -> None:
    """A Kafka error rewinds to the batch's first offset and tries again; the batch is committed once handled."""
    consumer = FakeConsumer([record(0), record(1)])
    seen: list[list[int]] = []
    stopping = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        seen.append([r.offset for r in records])
        if len(seen) == 1:
            raise KafkaConnectionError("broker away")
        stopping.set()

    await asyncio.wait_for(consume_batches(cast(AIOKafkaConsumer, consumer), handle, stopping, service="test"), 5)
    assert (seen, consumer.seeks, consumer.committed) == ([[0, 1], [0, 1]], [(TP, 0)], [{TP: 2}])


def test_outages_are_retryable_and_bugs_are_not() -> None:
    """Kafka, timeout and OS errors are outages; everything else is a bug."""
    expected = [True, True, True, False, False]
    errors = [KafkaConnectionError(), TimeoutError(), ConnectionResetError(), ValueError(), KeyError("x")]
    assert expected == [is_retryable(e) for e in errors]


async def test_fail_fast_logs_the_crash_wakes_the_owner_and_keeps_the_exception_to_reraise() -> None:
    """A watched task that raises sets the event, logs loop.crashed, and raise_if_crashed re-raises it."""
    crashed = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("inside a drain task")

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(broken(), name="router.drain")
        fail_fast(task, service="router", stopping=crashed)
        await asyncio.wait_for(crashed.wait(), 5)
    assert [e["event"] for e in logs] == ["loop.crashed"]
    assert (logs[0]["service"], logs[0]["task"]) == ("router", "router.drain")
    assert isinstance(logs[0]["exc_info"], RuntimeError)
    assert task.exception() is crash_of(crashed)
    with pytest.raises(RuntimeError, match="inside a drain task"):
        raise_if_crashed(crashed)


async def test_fail_fast_leaves_tasks_that_return_or_are_cancelled_alone() -> None:
    """Only an exception counts: a returned or cancelled task neither logs nor sets the event."""
    stopping = asyncio.Event()
    fine = asyncio.create_task(asyncio.sleep(0))
    hung = asyncio.create_task(asyncio.sleep(60))
    with structlog.testing.capture_logs() as logs:
        fail_fast(fine, service="x", stopping=stopping)
        fail_fast(hung, service="x", stopping=stopping)
        hung.cancel()
        await asyncio.wait([fine, hung])
        await asyncio.sleep(0)
    assert (logs, stopping.is_set(), crash_of(stopping)) == ([], False, None)
    raise_if_crashed(stopping)


async def test_fail_fast_keeps_the_first_crash() -> None:
    """When two watched tasks crash, the owner re-raises the first; both are logged."""
    stopping = asyncio.Event()

    async def boom(message: str, delay: float) -> None:
        await asyncio.sleep(delay)
        raise LookupError(message)

    with structlog.testing.capture_logs() as logs:
        tasks = [asyncio.create_task(boom("first", 0)), asyncio.create_task(boom("second", 0.01))]
        for task in tasks:
            fail_fast(task, service="x", stopping=stopping)
        await asyncio.wait(tasks)
        await asyncio.sleep(0)
    assert len(logs) == 2
    with pytest.raises(LookupError, match="first"):
        raise_if_crashed(stopping)


async def test_with_a_commit_interval_handled_batches_are_committed_together_and_when_the_input_runs_dry() -> None:
    """Three batches of one record inside the interval: one commit of all three once a poll comes back empty,
    never an offset whose batch was not handled."""
    stopping = asyncio.Event()

    class StopsWhenCommitted(FakeConsumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            await super().commit(offsets)
            stopping.set()

    consumer = StopsWhenCommitted([record(0), record(1), record(2)])
    handled: list[int] = []

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        handled.extend(r.offset for r in records)

    await asyncio.wait_for(
        consume_batches(
            cast(AIOKafkaConsumer, consumer), handle, stopping, service="test", max_records=1, commit_interval_s=60
        ),
        5,
    )
    assert handled == [0, 1, 2]
    assert consumer.committed == [{TP: 3}]


async def test_with_a_commit_interval_what_was_handled_is_committed_on_the_way_out() -> None:
    consumer = FakeConsumer([record(0), record(1)])
    stopping = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        if records[-1].offset == 1:
            stopping.set()

    await asyncio.wait_for(
        consume_batches(
            cast(AIOKafkaConsumer, consumer), handle, stopping, service="test", max_records=1, commit_interval_s=60
        ),
        5,
    )
    assert consumer.committed == [{TP: 2}]


async def test_a_commit_that_meets_an_outage_is_kept_for_the_next_one() -> None:
    """The records were handled: only the commit failed, so the next commit carries their offsets."""

    class Flaky(FakeConsumer):
        failed = False

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            if not self.failed:
                self.failed = True
                raise KafkaConnectionError("broker away")
            await super().commit(offsets)

    consumer = Flaky([record(0), record(1)])
    stopping = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        if records[-1].offset == 1:
            stopping.set()

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(
            consume_batches(cast(AIOKafkaConsumer, consumer), handle, stopping, service="test", max_records=1), 5
        )
    assert consumer.committed == [{TP: 2}]
    assert [e["event"] for e in logs] == ["batch.commit_retrying"]
