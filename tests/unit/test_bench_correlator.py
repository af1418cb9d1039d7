"""The correlator bench's judgement of a lag series, and the rate it feeds the correlator at."""

from __future__ import annotations

import pytest

from bench.correlator import (
    BOUND_S,
    DOCUMENTED_HALF_RATE,
    FLAT_SHARE,
    SAMPLE_S,
    half_rate,
    overlapping_alerts,
    trend,
)
from services.common.sightings import sightings_of


def ticks(seconds: float) -> list[float]:
    return [i * SAMPLE_S for i in range(int(seconds / SAMPLE_S))]


def test_the_sawtooth_of_commits_is_flat_whatever_its_phase() -> None:
    """A consumer keeping up, read from offsets committed every 1.01 s: each sample shows what arrived since
    the last commit (0 to 300 records), and the drift of that phase against the samples is no trend."""
    samples = [(t, int(300 * ((t % 1.01) / 1.01))) for t in ticks(60)]
    judged = trend(samples, arrivals_per_s=300)
    assert judged["flat"] is True
    assert abs(judged["slope_share_of_arrivals"]) < FLAT_SHARE / 5


def test_a_lag_that_grows_in_the_second_half_is_not_flat() -> None:
    """Falling behind after a good start: the second half's slope is what counts, not the average."""
    samples = [(t, 50 if t < 30 else int(50 + 20 * (t - 30))) for t in ticks(60)]
    judged = trend(samples, arrivals_per_s=300)
    assert judged["slope_per_s"] == pytest.approx(20, rel=0.02)
    assert judged["max_lag"] <= BOUND_S * 300 and FLAT_SHARE * 300 < 20  # only the slope condemns it
    assert judged["flat"] is False


def test_a_start_up_backlog_that_drains_is_flat_but_a_lag_beyond_the_bound_is_not() -> None:
    """The first half may hold the start's backlog; a lag ever above BOUND_S of arrivals is not bounded."""
    draining = [(t, max(0, int(300 - 30 * t))) for t in ticks(60)]
    assert trend(draining, arrivals_per_s=100)["flat"] is True
    assert trend(draining, arrivals_per_s=300 / BOUND_S - 1)["flat"] is False


def test_too_few_windows_tell_no_trend() -> None:
    """Fifteen seconds are three windows: refused rather than judged."""
    with pytest.raises(ValueError, match="too few"):
        trend([(t, 1) for t in ticks(15)], arrivals_per_s=10)


def test_the_lag_step_runs_at_half_the_measured_saturation_or_at_the_documented_rate() -> None:
    """Half of what the pipeline sustained in the run; without a measurement, the documented rate, said so."""
    assert half_rate({"saturation": {"sustained_per_second": 130.0}})[0] == 65.0
    rate, source = half_rate({"saturation": {"sustained_per_second": None}})
    assert (rate, "no saturation measured" in source) == (DOCUMENTED_HALF_RATE, True)


def test_the_workload_shares_some_values_between_alerts_of_different_origins() -> None:
    """Most values are an alert's own; some recur across originators, a few in many alerts."""
    alerts = overlapping_alerts(600)
    seen: dict[str, set[str]] = {}
    for a in alerts:
        for mention in sightings_of(a.alert):
            seen.setdefault(mention.key, set()).add(a.origin)
    shared = [key for key, origins in seen.items() if len(origins) > 1]
    assert 0 < len(shared) < len(seen) / 4
    assert max(len(origins) for origins in seen.values()) > 5
