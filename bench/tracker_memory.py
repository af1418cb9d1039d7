"""What the tracker holds after a year of alerts at the demo's rate, with retention and without (issue 18).

    python -m bench.tracker_memory --days 365          # the year, folded (long: see below)
    python -m bench.tracker_memory --days 10 --json    # a shorter run; the year is extrapolated from it

The demo's traffic (`rctc dev up`'s feed, services/demo/feed.py): one alert every 4 s, its scenarios in turn,
each to 8 recipients by Kafka and webhook; every webhook copy delivered at its first attempt a second later;
each recipient acknowledges with a probability of 0.7 three seconds after the routing (the feed's pattern),
and one that does not is escalated at its deadline and to the duty desk one period later, as the tracker
would. Records are folded through the ledger in time order, `retire(now)` every `--retire-every-h` hours of
simulated time (the service looks every minute; a coarser step only holds a few hours' alerts more, so the
figure errs high), and the memory held at the end is measured with tracemalloc after a full collection. Each
record goes through the codec first (encoded, then decoded as the tracker reads it): what the ledger keeps are
the decoded strings and times, one object each, as in the service.

Both figures grow linearly with the number of alerts (the held alerts and the summaries have fixed sizes), so a
shorter run gives the bytes of one held alert and of one summary, and the year follows: the alerts of the last
`retention` held in full, the rest as summaries. `--days 365` folds the year itself (7.9 million alerts;
about an hour and some GB without retention).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import heapq
import json
import random
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.codec import Codec
from services.common.records import (
    AckResponse,
    AckSubmitted,
    AlertRouted,
    DeliveryAttempted,
    EscalationRaised,
    RoutingDecision,
)
from services.demo.feed import SCENARIOS
from services.router.deadlines import ack_due
from services.tracker.state import Ledger

START = datetime(2026, 1, 1, tzinfo=UTC)
INTERVAL_S = 4.0  # the feed's --interval default
RECIPIENTS = 8
ACK_SHARE = 0.7  # services/demo/feed.py acknowledge_some
RESPONSES: tuple[AckResponse, ...] = ("actioned", "no_nexus", "request_info")
AGENCIES = [
    f"{c}-{s}"
    for c, s in zip(["IQ", "JO", "SA", "AE", "EG", "KW", "LB", "TR", "QA", "BH", "OM"], "ABCDEFGHIJK", strict=True)
]

Record = AlertRouted | DeliveryAttempted | AckSubmitted | EscalationRaised


def alerts(days: float, seed: int = 7) -> Iterator[tuple[datetime, Record]]:
    """The demo's records over `days`, in time order, up to the last alert's routing."""
    rng = random.Random(seed)
    pending: list[tuple[datetime, int, Record]] = []
    seq = 0
    count = int(days * 86400 / INTERVAL_S)
    for n in range(count):
        at = START + timedelta(seconds=n * INTERVAL_S)
        while pending and pending[0][0] <= at:
            when, _, record = heapq.heappop(pending)
            yield when, record
        _, scenario = SCENARIOS[n % len(SCENARIOS)]
        origin = AGENCIES[n % len(AGENCIES)]
        others = [a for a in AGENCIES if a != origin]
        recipients = rng.sample(others, RECIPIENTS)
        alert_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        due = ack_due("Alert", scenario["severity"], scenario["urgency"], {}, at)
        decisions = [RoutingDecision(agency=origin, delivered=False, rule="originator", reason="the originator")]
        for agency in recipients:
            decisions.append(
                RoutingDecision(
                    agency=agency,
                    delivered=True,
                    rule="shared",
                    reason=f"agreement GCC-CT-2026 shares {scenario['category']} with {agency}",
                    agreement_id="GCC-CT-2026",
                    redacted_fields=("subjects",),
                    channels=("kafka", "webhook"),
                    copy_sha256=hashlib.sha256(f"{alert_id}{agency}".encode()).hexdigest(),
                    ack_due=due,
                    event="alert.created",
                )
            )
        for agency in (a for a in others if a not in recipients):
            decisions.append(RoutingDecision(agency=agency, delivered=False, rule="not_subscribed", reason="no match"))
        yield (
            at,
            AlertRouted(
                alert_id=alert_id,
                origin=origin,
                msg_type="Alert",
                severity=scenario["severity"],
                urgency=scenario["urgency"],
                routed_at=at,
                registry_version=12,
                decisions=tuple(decisions),
            ),
        )
        for agency in recipients:
            later: list[tuple[datetime, Record]] = [
                (
                    at + timedelta(seconds=1),
                    DeliveryAttempted(
                        webhook_id=f"msg_{seq}",
                        alert_id=alert_id,
                        agency=agency,
                        attempt=1,
                        outcome="delivered",
                        status_code=204,
                        latency_ms=12.0,
                        attempted_at=at + timedelta(seconds=1),
                    ),
                )
            ]
            if rng.random() < ACK_SHARE:
                acked = at + timedelta(seconds=3)
                response: AckResponse = rng.choice(RESPONSES)
                ack = AckSubmitted(
                    ack_id=str(seq),
                    alert_id=alert_id,
                    agency=agency,
                    response=response,
                    channel="http",
                    submitted_at=acked,
                )
                later.append((acked, ack))
            elif due is not None:
                for level, deadline in ((1, due), (2, due + (due - at))):
                    raised = EscalationRaised(
                        alert_id=alert_id,
                        agency=agency,
                        origin=origin,
                        level=level,
                        reason="no acknowledgement",
                        deadline=deadline,
                        raised_at=deadline,
                    )
                    later.append((deadline, raised))
            for when, record in later:
                seq += 1
                heapq.heappush(pending, (when, seq, record))
    # Nothing after the last alert: the ledger as it stands at the end of the traffic, its last hours still open.


def fold(days: float, retention: timedelta | None, retire_every: timedelta) -> dict[str, Any]:
    """Fold `days` of the demo's records into a ledger; what it holds at the end, and the bytes that takes."""
    codec = Codec.from_directory()
    codec.decode(codec.encode(next(iter(alerts(0.001)))[1]), AlertRouted)  # its lazy parts made before measuring
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    ledger = Ledger(retention=retention)
    next_retire = START + retire_every
    now = START
    for now, written in alerts(days):
        record = codec.decode(codec.encode(written), type(written))
        if now >= next_retire:
            ledger.retire(now)
            next_retire = now + retire_every
        if isinstance(record, AlertRouted):
            ledger.apply_routed(record)
        elif isinstance(record, DeliveryAttempted):
            ledger.apply_attempt(record)
        elif isinstance(record, AckSubmitted):
            ledger.apply_ack(record)
        else:
            ledger.apply_escalation(record)
    ledger.retire(now)
    sizes = ledger.sizes()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    # What the summaries alone take: what dropping them frees.
    ledger.retired.clear()
    gc.collect()
    summaries = held - (tracemalloc.get_traced_memory()[0] - base)
    tracemalloc.stop()
    return {
        "days": days,
        "retention_days": None if retention is None else retention / timedelta(days=1),
        "sizes": sizes,
        "bytes": held,
        "summaries_bytes": summaries,
        "seconds": round(time.perf_counter() - started, 1),
    }


def year(with_: dict[str, Any], without: dict[str, Any], retention_days: float) -> dict[str, Any]:
    """The year at the demo's rate, from the bytes of one held alert (the run without retention) and of one
    summary (the run with it)."""
    per_alert = without["bytes"] / without["sizes"]["alerts"]
    per_summary = with_["summaries_bytes"] / with_["sizes"]["retired"]
    alerts_a_year = 365 * 86400 / INTERVAL_S
    held = min(alerts_a_year, retention_days * 86400 / INTERVAL_S)
    return {
        "alerts": int(alerts_a_year),
        "bytes_per_held_alert": round(per_alert),
        "bytes_per_summary": round(per_summary),
        "without_retention_bytes": round(alerts_a_year * per_alert),
        "with_retention_bytes": round(held * per_alert + (alerts_a_year - held) * per_summary),
        "of_which_summaries_bytes": round((alerts_a_year - held) * per_summary),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=10.0, help="simulated days of the demo's traffic")
    parser.add_argument("--retention-days", type=float, default=7.0, help="TrackerSettings.retention_s, in days")
    parser.add_argument("--retire-every-h", type=float, default=6.0, help="simulated hours between retire() calls")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    every = timedelta(hours=args.retire_every_h)
    with_ = fold(args.days, timedelta(days=args.retention_days), every)
    without = fold(args.days, None, every)
    report = {"with_retention": with_, "without_retention": without}
    if with_["sizes"]["retired"]:
        report["year"] = {
            f"retention_{d:g}_days": year(with_, without, d) for d in sorted({args.retention_days, 7.0, 30.0})
        }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
