"""bench/tracker_memory.py: the demo's traffic it folds, and the year it extrapolates. No I/O."""

from __future__ import annotations

from bench.tracker_memory import INTERVAL_S, RECIPIENTS, alerts, year
from services.common.records import AckSubmitted, AlertRouted


def test_the_traffic_is_the_demos_in_time_order() -> None:
    """One alert every 4 s to 8 recipients, records in time order, about 70% of the rows acknowledged."""
    records = list(alerts(0.1))
    routed = [r for _, r in records if isinstance(r, AlertRouted)]
    acks = [r for _, r in records if isinstance(r, AckSubmitted)]

    assert len(routed) == int(0.1 * 86400 / INTERVAL_S)
    assert {RECIPIENTS} == {sum(d.delivered for d in r.decisions) for r in routed}
    assert [t for t, _ in records] == sorted(t for t, _ in records)
    assert 0.6 < len(acks) / (len(routed) * RECIPIENTS) < 0.8


def test_the_year_holds_the_retention_in_full_and_the_rest_as_summaries() -> None:
    """With 1000 bytes a held alert and 100 a summary, a year is the retention's alerts in full, the rest summarised."""
    without = {"bytes": 1000 * 10, "sizes": {"alerts": 10}}
    with_ = {"summaries_bytes": 100 * 5, "sizes": {"retired": 5}}
    a_day = 86400 / INTERVAL_S

    found = year(with_, without, retention_days=7)

    assert (found["bytes_per_held_alert"], found["bytes_per_summary"]) == (1000, 100)
    assert found["with_retention_bytes"] == round(7 * a_day * 1000 + 358 * a_day * 100)
    assert found["without_retention_bytes"] == round(365 * a_day * 1000)
