"""The at-least-once consume loop, and the one policy for exceptions nobody expected.

Offsets are committed only after a batch is fully handled (its output acknowledged by the broker). What
goes wrong while handling is one of three things, and each has its own answer:

    a record that can never succeed     the handler's to divert (records.quarantine, alerts.rejected,
      (a poison record)                 deliveries.dead): a signal, not an error; the handler returns
    an outage (Kafka, a timeout,        nothing is committed; the loop seeks back to the batch's first
      the operating system)             offsets and tries again after a growing pause: delayed, not lost
    anything else (a bug)               `loop.crashed` is logged with the traceback and the exception is
                                        re-raised: the service's TaskGroup fails, `runner.serve` exits
                                        non-zero, and the next start resumes from the committed offsets

Retrying a bug for ever would stall the partition silently behind one batch (or, in a loop that moves on,
lose it); dying loudly lets the supervisor restart the process and an operator see why, and nothing past
the unfinished batch was committed. Loops that are not `consume_batches` (a router partition's drain task,
a dispatcher delivery) get the same policy from `fail_fast`:

    task = asyncio.create_task(self._drain(tp))
    fail_fast(task, service="router", stopping=crashed)
    ...
    await crashed.wait()
    raise_if_crashed(crashed)       # re-raises the task's exception in the owner
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from services.common.kafka import AnyGroupConsumer, offsets_after
from services.common.logs import get_logger
from services.common.metrics import BATCH_FAILURES, LOOP_CRASHES

log = get_logger(__name__)

BatchHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]

# The failures a loop waits out and retries: the broker or the network is away, not our code wrong.
RETRYABLE: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)


def is_retryable(exc: BaseException) -> bool:
    """True for an outage (Kafka, timeout, OS error) that a loop retries; False for a bug it must not hide."""
    return isinstance(exc, RETRYABLE)


async def consume_batches(
    consumer: AnyGroupConsumer,
    handle: BatchHandler,
    stopping: asyncio.Event,
    *,
    service: str,
    max_records: int = 200,
    poll_ms: int = 250,
    commit_interval_s: float = 0.0,
) -> None:
    """Fetch, handle and commit batches until `stopping` is set; raise what is neither outage nor signal.

    With `commit_interval_s`, the offsets of handled batches are committed at most that often (and whenever a
    poll comes back empty, and on the way out) rather than after every batch: at a few alerts per batch an
    OffsetCommit round trip per batch was a request per alert, for the client and the broker alike (issue 19).
    Only handled batches are ever committed, so it stays at least once; a crash or a rebalance hands the new
    owner up to that interval's records again, which the next stage deduplicates as it does any repeat."""
    backoff = 0.1
    done: dict[TopicPartition, int] = {}  # handled, not yet committed
    last_commit = time.monotonic()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=poll_ms, max_records=max_records)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                if done:
                    await _commit(consumer, done, service)
                    last_commit = time.monotonic()
                continue
            try:
                await handle(records)
                for tp, offset in offsets_after(records).items():
                    done[tp] = max(done.get(tp, 0), offset)
                if time.monotonic() - last_commit >= commit_interval_s:
                    await _commit(consumer, done, service)
                    last_commit = time.monotonic()
                backoff = 0.1
            except RETRYABLE as exc:
                await _rewind(consumer, records, service, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                # A bug, not an outage. Nothing of this batch was committed, so the next start handles it again.
                _crashed(service, records=len(records), first=_first_offsets(records))
                raise
    finally:
        if done:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await _commit(consumer, done, service)


async def _commit(consumer: AnyGroupConsumer, done: dict[TopicPartition, int], service: str) -> None:
    """Commit what was handled. After a rebalance it is dropped (the partition's new owner fetches those records
    again); after an outage it is kept for the next commit (the records were handled: only the commit failed)."""
    offsets = {tp: o for tp, o in done.items() if tp in consumer.assignment()}
    done.clear()
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except CommitFailedError:
        log.warning("batch.commit_failed", service=service, partitions=len(offsets))
    except RETRYABLE as exc:
        for tp, offset in offsets.items():
            done[tp] = max(done.get(tp, 0), offset)
        log.warning("batch.commit_retrying", service=service, partitions=len(offsets), error=repr(exc))


def fail_fast(task: asyncio.Task[Any], *, service: str, stopping: asyncio.Event | None = None) -> None:
    """Apply the policy to a task nobody awaits at once: if it ends with an exception, log `loop.crashed`
    with the traceback, keep the exception for `raise_if_crashed(stopping)`, and set `stopping` so the
    owner wakes up and re-raises it (its TaskGroup then fails and `runner.serve` exits non-zero).

    A cancelled task, or one that returned, is left alone. The callback reads the exception, so asyncio's
    "Task exception was never retrieved" never stands in for the log line. Without `stopping` the exception
    stays on the task for whoever awaits it. The first crash per event is kept; later ones are only logged.
    """

    def done(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is None:
            return
        _crashed(service, exc=exc, task=t.get_name())
        if stopping is not None:
            _crashes.setdefault(stopping, exc)
            stopping.set()

    task.add_done_callback(done)


def crash_of(stopping: asyncio.Event) -> BaseException | None:
    """The first exception a task watched by `fail_fast(..., stopping=stopping)` ended with, if any."""
    return _crashes.get(stopping)


def raise_if_crashed(stopping: asyncio.Event) -> None:
    """Re-raise, in the owner, the first exception a task watched with this event ended with."""
    exc = _crashes.get(stopping)
    if exc is not None:
        raise exc


# Keyed by the event each owner waits on, weakly: a stopped service's event (and its exception) goes with it.
_crashes: weakref.WeakKeyDictionary[asyncio.Event, BaseException] = weakref.WeakKeyDictionary()


def _crashed(service: str, exc: BaseException | None = None, **fields: Any) -> None:
    LOOP_CRASHES.labels(service).inc()
    # Inside an `except` block exc_info=True takes the exception being handled; from a callback, the task's.
    log.error("loop.crashed", service=service, exc_info=exc if exc is not None else True, **fields)


def _first_offsets(records: list[ConsumerRecord]) -> dict[str, int]:
    first: dict[str, int] = {}
    for r in records:
        key = f"{r.topic}/{r.partition}"
        first[key] = min(first.get(key, r.offset), r.offset)
    return first


async def _rewind(consumer: AnyGroupConsumer, records: list[ConsumerRecord], service: str, exc: BaseException) -> None:
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(first.get(tp, r.offset), r.offset)
    for tp, offset in first.items():
        BATCH_FAILURES.labels(service, tp.topic).inc()
        if tp in consumer.assignment():
            consumer.seek(tp, offset)
    log.warning("batch.retrying", service=service, records=len(records), error=repr(exc))
