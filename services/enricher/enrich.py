"""From a submitted alert to an enriched one. Pure: no I/O, the clock passed in.

outcome = enrich(submitted, now=utcnow(), watchlist=Watchlist())   # AlertEnriched or AlertRejected
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.common.normalise import comparable_values
from services.common.priority import priority, raised
from services.common.records import Alert, AlertEnriched, AlertRejected, AlertSubmitted
from services.common.watchlist import Watchlist
from services.enricher.indicators import extract, normalise


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


def enrich(submitted: AlertSubmitted, *, now: datetime, watchlist: Watchlist) -> AlertEnriched | AlertRejected:
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
    # Matched after normalising, so indicators found in the free text are matched too.
    hits = watchlist.hits(comparable_values(alert, watchlist.kinds()), now)
    return AlertEnriched(
        alert_id=submitted.alert_id,
        origin=submitted.origin,
        submitted_at=submitted.submitted_at,
        enriched_at=now,
        priority=raised(priority(alert), len(hits)),
        extracted_indicators=extracted,
        watchlist_hits=hits,
        scheduled_by=submitted.scheduled_by,
        idempotency_key=submitted.idempotency_key,
        alert=alert,
    )
