"""Long garbage-collector pauses, logged: a full collection stops the event loop for as long as it takes.

A service holding much state (the router's routed log, the tracker's ledger) makes every full collection
walk all of it; when one takes longer than a delivery's latency budget, operators should see it in the log
rather than guess at a latency spike.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from collections.abc import Callable
from typing import Any

from services.common.logs import get_logger

log = get_logger(__name__)

GC_YOUNG = 20_000
_settling = False
# Pauses seen by the collector's callback and not yet logged: (generation, seconds, objects collected).
_pauses: collections.deque[tuple[int, float, int]] = collections.deque(maxlen=256)


def watch(threshold_s: float = 0.02) -> Callable[[str, dict[str, Any]], None]:
    """Note every collection that stops the process for longer than `threshold_s` (`report` logs them);
    returns the callback (in gc.callbacks).

    The callback runs inside whatever allocation set the collection off, in the middle of any C code, so it
    only appends to a deque. It used to log from there, count the tracked objects with gc.get_objects() and
    swap structlog's context variables around the line, and the interpreter died of a segmentation fault
    (two services in one day of benchmarks). The reproducer in tests/unit/test_gc_pauses.py crashed in two
    runs of three with that callback, in none of three without the gc.get_objects() call, and never with
    this one: whatever a callback does runs between two steps of the interrupted code.
    """
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if _settling:
            return  # settle()'s own full collection, at start-up, is no pause of the service
        if phase == "start":
            started[0] = time.perf_counter()
            return
        paused = time.perf_counter() - started[0]
        if paused >= threshold_s:
            _pauses.append((info["generation"], paused, info["collected"]))

    gc.callbacks.append(callback)
    return callback


def drain() -> None:
    """Log the pauses noted since the last call (a task of its own, so no alert's context is on the line)."""
    while _pauses:
        generation, paused, collected = _pauses.popleft()
        log.warning(
            "gc.pause",
            generation=generation,
            paused_ms=round(paused * 1000, 1),
            collected=collected,
            # What a full collection walks, counted now rather than inside it.
            tracked_objects=len(gc.get_objects()) if generation == 2 else None,
        )


async def report(every_s: float = 1.0) -> None:
    """Log noted pauses every `every_s` until cancelled (the runner starts it with each service)."""
    try:
        while True:
            await asyncio.sleep(every_s)
            drain()
    finally:
        drain()


def settle() -> None:
    """Once started: what start-up built (modules, schemas, compiled writers, the registry) is never
    garbage, so it leaves the collector's generations and no full collection walks it again; and young
    collections run every GC_YOUNG allocations instead of 700, so fewer of them end in a full one."""
    global _settling
    _settling = True
    try:
        gc.collect()
    finally:
        _settling = False
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
