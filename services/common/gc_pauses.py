"""Long garbage-collector pauses, logged: a full collection stops the event loop for as long as it takes.

A service holding much state (the router's routed log, the tracker's ledger) makes every full collection
walk all of it; when one takes longer than a delivery's latency budget, operators should see it in the log
rather than guess at a latency spike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

from services.common.logs import get_logger

log = get_logger(__name__)

GC_YOUNG = 20_000
_settling = False


def watch(threshold_s: float = 0.02) -> Callable[[str, dict[str, Any]], None]:
    """Log every collection that stops the process for longer than `threshold_s`; returns the callback
    (in gc.callbacks)."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if _settling:
            return  # settle()'s own full collection, at start-up, is no pause of the service
        if phase == "start":
            started[0] = time.perf_counter()
            return
        paused = time.perf_counter() - started[0]
        if paused >= threshold_s:
            # The collection ran inside whichever task allocated last: its bound alert id is not this line's.
            bound = structlog.contextvars.get_contextvars()
            structlog.contextvars.clear_contextvars()
            log.warning(
                "gc.pause",
                generation=info.get("generation"),
                paused_ms=round(paused * 1000, 1),
                collected=info.get("collected"),
                tracked_objects=len(gc.get_objects()) if info.get("generation") == 2 else None,
            )
            structlog.contextvars.bind_contextvars(**bound)

    gc.callbacks.append(callback)
    return callback


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
