"""A correlation as the record the router reads: its deterministic id and its two sides. Pure.

    record = correlated(sighting_kind, value, (earlier, later), found_at=utcnow())

The id is uuid5 over the two THREAD ids (sorted), the kind and the value, so the same pair found again
(a replay after a crash, an index rebuilt from its changelog, or an Update of a thread the window pruned from
the index, which comes back as a new sighting) is written under the same id, and the router drops it by id:
nobody is told twice of one pair of threads sharing one value (red team: alert ids named such an Update's pair
anew).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.common.records import AlertCorrelated, CorrelatedAlert, Sighting

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:rctc:correlation")


def correlation_id(thread_a: str, thread_b: str, kind: str, value: str) -> str:
    first, second = sorted((thread_a, thread_b))
    return str(uuid.uuid5(_NAMESPACE, f"{first}\n{second}\n{kind}\n{value}"))


def side(s: Sighting) -> CorrelatedAlert:
    return CorrelatedAlert(alert_id=s.alert_id, thread_id=s.thread_id, origin=s.origin, fields=list(s.fields))


def correlated(kind: str, value: str, pair: tuple[Sighting, Sighting], *, found_at: datetime) -> AlertCorrelated:
    """The record of `pair` (earlier, later) sharing `kind:value`."""
    a, b = pair
    return AlertCorrelated(
        correlation_id=correlation_id(a.thread_id, b.thread_id, kind, value),
        kind=kind,
        value=value,
        a=side(a),
        b=side(b),
        found_at=found_at,
        candidates=None,
    )
