"""From a submitted alert to an enriched one. Pure: no I/O, the clock passed in.

outcome = enrich(submitted, now=utcnow(), watchlist=frozenset())   # AlertEnriched or AlertRejected
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.common.records import Alert, AlertEnriched, AlertRejected, AlertSubmitted
from services.enricher.indicators import extract, normalise

# 1 is "act now", 4 "routine": severity sets the base, urgency and certainty move it.
_BASE = {"Extreme": 1, "Severe": 2, "Moderate": 3, "Minor": 4, "Unknown": 4}


def priority(alert: Alert) -> int:
    p = _BASE[alert.severity]
    if alert.urgency == "Immediate":
        p -= 1
    elif alert.urgency in ("Future", "Past"):
        p += 1
    if alert.certainty in ("Unlikely", "Unknown"):
        p += 1
    return max(1, min(4, p))


def normalised(alert: Alert) -> tuple[Alert, int]:
    """The alert with tidy codes and indicators, plus how many indicators came from its text."""
    given = [normalise(i) for i in alert.indicators]
    from_text = extract(f"{alert.title}\n{alert.summary}")
    indicators = list(dict.fromkeys([*given, *from_text]))
    return msgspec.structs.replace(
        alert,
        affected_countries=sorted({c.upper() for c in alert.affected_countries}),
        releasable_to=sorted({c.upper() for c in alert.releasable_to}),
        indicators=indicators,
    ), len(indicators) - len(set(given))


def enrich(submitted: AlertSubmitted, *, now: datetime, watchlist: frozenset[str]) -> AlertEnriched | AlertRejected:
    alert = submitted.alert
    if alert.expires is not None and alert.expires <= now:
        return AlertRejected(
            alert_id=submitted.alert_id,
            origin=submitted.origin,
            stage="enricher",
            reason=f"expired at {alert.expires.isoformat()} before it could be shared",
            rejected_at=now,
        )
    alert, extracted = normalised(alert)
    names = {s.name.casefold() for s in alert.subjects}
    hits = sorted(
        {i.value for i in alert.indicators if i.value.casefold() in watchlist} | {n for n in names if n in watchlist}
    )
    return AlertEnriched(
        alert_id=submitted.alert_id,
        origin=submitted.origin,
        submitted_at=submitted.submitted_at,
        enriched_at=now,
        priority=priority(alert),
        extracted_indicators=extracted,
        watchlist_hits=hits,
        scheduled_by=submitted.scheduled_by,
        idempotency_key=submitted.idempotency_key,
        alert=alert,
    )
