"""The benchmark's own arithmetic: percentiles, windows after the burst, and when latency recovered."""

from __future__ import annotations

import pytest

from bench.baselines import AGENCY_TOPICS
from bench.harness import percentiles, steady_rate
from bench.pipeline import RAMP_FACTOR, RAMP_START, Latencies, finished, kept_up, next_rate, recovery_s
from bench.probe import send_to_readable


def test_percentiles_pick_the_ranked_sample() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    figures = percentiles(values)
    assert figures["count"] == 1000
    assert figures["p50_ms"] == 501.0
    assert figures["p99_ms"] == 991.0
    assert figures["max_ms"] == 1000.0
    assert percentiles([]) == {"count": 0}


def test_probe_times_a_transaction_to_its_last_copy_and_skips_incomplete_ones() -> None:
    sent = [(b"probe-0", 100.0), (b"probe-1", 200.0)]
    seen = {b"probe-0:" + t.encode(): 100.005 + i / 1000 for i, t in enumerate(AGENCY_TOPICS)}
    seen |= {b"probe-1:" + t.encode(): 200.001 for t in AGENCY_TOPICS[1:]}  # one copy of probe-1 not readable
    [(began, delay)] = send_to_readable(sent, seen)
    assert began == 100.0
    assert delay == pytest.approx(0.005 + (len(AGENCY_TOPICS) - 1) / 1000)


def test_windows_group_alerts_by_submission_time() -> None:
    m = Latencies(submitted={"a": 100.0, "b": 101.0, "c": 106.0})
    m.topic = {("a", "X"): 0.010, ("b", "X"): 0.300, ("c", "X"): 0.020}
    m.webhook = {("a", "X"): 0.015, ("b", "X"): 0.400, ("c", "X"): 0.030}
    windows = m.windows({"a", "b", "c"}, since=100.0)
    assert [w["from_s"] for w in windows] == [0, 5]
    assert windows[0]["topic_p99_ms"] == 300.0  # the slow alert b is in the first window
    assert windows[1]["topic_p99_ms"] == 20.0


def test_recovery_is_the_start_of_the_last_run_of_good_windows() -> None:
    def w(start: int, topic: float, hook: float) -> dict[str, float]:
        return {"from_s": start, "topic_p99_ms": topic, "webhook_p99_ms": hook}

    windows = [w(0, 300, 900), w(5, 20, 30), w(10, 200, 30), w(15, 20, 40), w(20, 24, 45)]
    assert recovery_s(windows, 25, 50) == 15  # the good window at 5 s did not last
    assert recovery_s(windows, 10, 50) is None  # never under 10 ms
    assert recovery_s([w(0, 20, 30)], 25, 50) == 0


def test_steady_rate_ignores_a_lumpy_start_and_end() -> None:
    # 1,000 units: 80 complete at once at t=0 (a first batch), then 10 per second, then a straggler.
    times = [0.0] * 80 + [1 + i / 10 for i in range(919)] + [500.0]
    assert steady_rate(times) == pytest.approx(10, rel=0.02)
    with pytest.raises(ValueError):
        steady_rate([5.0] * 100)  # all at once: no rate


def test_an_alert_completes_when_its_last_copy_or_webhook_does_and_only_if_all_do() -> None:
    m = Latencies(submitted={"a": 100.0, "b": 101.0})
    m.topic = {("a", "X"): 0.010, ("a", "Y"): 0.030, ("b", "X"): 0.020}  # b's copy for Y never arrived
    m.webhook = {("a", "X"): 0.050, ("a", "Y"): 0.040, ("b", "X"): 0.060, ("b", "Y"): 0.070}
    assert finished(m, {"a", "b"}, ["X", "Y"]) == [pytest.approx(100.050)]


def test_a_load_is_sustained_only_if_every_alert_completes_soon_after_it_ends() -> None:
    ids = {"a", "b", "c"}
    assert kept_up(ids, [1.0, 5.0, 8.4], load_end=8.0) == (True, 0.4)
    # A backlog that grew all along: the last alert completes seconds after the load ended.
    assert kept_up(ids, [1.0, 6.0, 10.5], load_end=8.0) == (False, 2.5)
    # An alert that never completed (a copy or a webhook missing) fails the load.
    assert kept_up(ids, [1.0, 2.0], load_end=8.0) == (False, None)


def test_the_ramp_climbs_until_a_rate_fails_then_narrows_between_the_two() -> None:
    assert next_rate(None, None) == RAMP_START
    assert next_rate(60.0, None) == pytest.approx(60.0 * RAMP_FACTOR)
    assert next_rate(None, 40.0) == 20.0  # even the first failed: halve until one passes
    assert next_rate(90.0, 135.0) == pytest.approx((90.0 * 135.0) ** 0.5)
    assert next_rate(110.0, 120.0) is None  # within the precision: done
    # Followed to the end against a pipeline that sustains 100/s: it stops within 15% of it.
    sustained, failed, rates = None, None, []
    while (rate := next_rate(sustained, failed)) is not None and len(rates) < 10:
        rates.append(rate)
        sustained, failed = (rate, failed) if rate <= 100 else (sustained, rate)
    assert sustained is not None and failed is not None
    assert sustained <= 100 < failed <= sustained * 1.15
    assert len(rates) <= 8


def test_hot_frames_names_own_time_and_the_projects_functions_by_time_under_them() -> None:
    from bench.cost import hot_frames
    from bench.harness import ROOT

    root, loop = f"{ROOT}/", "run (asyncio/runners.py:118)"
    collapsed = "\n".join(
        [
            f"{loop};_handle (services/enricher/service.py:40);extract ({root}services/enricher/indicators.py:9) 6",
            f"{loop};_handle (services/enricher/service.py:41);decode ({root}services/common/codec.py:250) 3",
            "run (asyncio/runners.py:118) 1",
            "not a stack line",
        ]
    )
    found = hot_frames(collapsed)
    assert found["samples"] == 10
    assert found["own"][0] == ["extract (services/enricher/indicators.py)", 0.6]
    # Two lines of one function are one entry; frames outside services/ are never "under".
    under = dict(found["under"])
    assert under["_handle (services/enricher/service.py)"] == 0.9
    assert not any("asyncio" in name for name in under)


def test_the_report_gives_each_services_cpu_per_alert_and_the_brokers_or_says_it_was_not_measured() -> None:
    from bench.report import _cpu

    step = {"cpu_s_per_1000_alerts": {"router": 4.5, "gateway": 2.0, "total": 6.5}, "broker_cpu_s_per_1000_alerts": 9.1}
    assert _cpu(step) == "6.5 all services (router 4.5, gateway 2.0); broker 9.1"
    assert _cpu({}) == "not measured"  # no half-saturation step (no saturation found)
