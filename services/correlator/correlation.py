"""A correlation as the record the router reads: its deterministic id and its two sides. Pure.

    record = correlated(sighting_kind, value, (earlier, later), found_at=utcnow())

The id is uuid5 over the two alert ids (sorted), the kind and the value, so the same pair found again
(a replay after a crash, an index rebuilt from its changelog) is written under the same id, and the router
drops it by id.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.common.records import AlertCorrelated, CorrelatedAlert, Sighting

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rctc:correlation")


def correlation_id(alert_a: str, alert_b: str, kind: str, value: str) -> str:
    first, second = sorted((alert_a, alert_b))
    return str(uuid.uuid5(_NAMESPACE, f"{first}\n{second}\n{kind}\n{value}"))


def side(s: Sighting) -> CorrelatedAlert:
    return CorrelatedAlert(alert_id=s.alert_id, thread_id=s.thread_id, origin=s.origin, fields=list(s.fields))


def correlated(kind: str, value: str, pair: tuple[Sighting, Sighting], *, found_at: datetime) -> AlertCorrelated:
    """The record of `pair` (earlier, later) sharing `kind:value`."""
    a, b = pair
    return AlertCorrelated(
        correlation_id=correlation_id(a.alert_id, b.alert_id, kind, value),
        kind=kind,
        value=value,
        a=side(a),
        b=side(b),
        found_at=found_at,
        candidates=None,
    )
