"""Long collector pauses reach the log; start-up state leaves the collector's generations."""

from __future__ import annotations

import gc

import structlog

from services.common import gc_pauses


def test_a_pause_over_the_threshold_is_logged_without_the_tasks_context() -> None:
    callback = gc_pauses.watch(threshold_s=0.0)
    structlog.contextvars.bind_contextvars(alert_id="not-the-collectors")
    try:
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            gc.collect()
        assert structlog.contextvars.get_contextvars() == {"alert_id": "not-the-collectors"}  # restored
    finally:
        gc.callbacks.remove(callback)
        structlog.contextvars.clear_contextvars()
    pauses = [entry for entry in logs if entry["event"] == "gc.pause"]
    assert pauses and pauses[0]["generation"] == 2 and pauses[0]["paused_ms"] >= 0
    assert "alert_id" not in pauses[0]


def test_settle_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc_pauses.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == gc_pauses.GC_YOUNG
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
