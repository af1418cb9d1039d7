"""Consumer-group lag summed per (group, topic) from committed offsets and partition ends (services/common/lag.py).
No I/O."""

from __future__ import annotations

from services.common.lag import LagRow, lag_rows


def test_rows_sum_partitions_per_group_and_topic_sorted() -> None:
    """Each (group, topic) sums its partitions' committed offsets, ends and lags; rows sorted by group, topic."""
    committed = {
        ("rctc-tracker", "alerts.routed", 0): 10,
        ("rctc-router", "alerts.enriched", 1): 7,
        ("rctc-router", "alerts.enriched", 0): 5,
        ("rctc-tracker", "acks.submitted", 0): 3,
    }
    ends = {("alerts.enriched", 0): 9, ("alerts.enriched", 1): 7, ("alerts.routed", 0): 12, ("acks.submitted", 0): 3}
    assert lag_rows(committed, ends) == [
        LagRow("rctc-router", "alerts.enriched", partitions=2, lag=4, committed=12, end=16),
        LagRow("rctc-tracker", "acks.submitted", partitions=1, lag=0, committed=3, end=3),
        LagRow("rctc-tracker", "alerts.routed", partitions=1, lag=2, committed=10, end=12),
    ]


def test_partitions_without_a_commit_or_an_end_are_left_out_and_lag_is_never_negative() -> None:
    """A negative committed offset (none) or an unknown end drops the partition; an end read before a commit that
    passed it counts 0, not a negative lag."""
    committed = {("g", "t", 0): -1001, ("g", "t", 1): 4, ("g", "t", 2): 9, ("g", "u", 0): 1}
    ends = {("t", 0): 5, ("t", 1): 6, ("t", 2): 8}
    assert lag_rows(committed, ends) == [LagRow("g", "t", partitions=2, lag=2, committed=13, end=14)]
    assert lag_rows({}, ends) == []
