"""Prometheus metrics every service exports on /metrics. Service-specific metrics live in the service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECORDS = Counter(
    "rctc_records_total",
    "Records a service finished handling, by outcome.",
    ["service", "topic", "outcome"],
)
RECORD_SECONDS = Histogram(
    "rctc_record_seconds",
    "Time from fetching a record to committing it.",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_FAILURES = Counter(
    "rctc_batch_failures_total",
    "Batches that failed and were re-fetched from their first offset.",
    ["service", "topic"],
)
LOOP_CRASHES = Counter(
    "rctc_loop_crashes_total",
    "Loops stopped by an unexpected exception (logged as loop.crashed); the process exits non-zero.",
    ["service"],
)
